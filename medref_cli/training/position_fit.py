"""Training the image-only position predictor: head first, then the deepest encoder stages, kept by mAP.

The reference's schedule (`train_position_predictor.py`): one AdamW over two parameter groups, the
head at `position.lr_head` and the visual encoder at `position.lr_backbone` (weight decay
`position.weight_decay`), one cosine from those rates to 0 over `position.epochs`, stepped per
epoch. The encoder is frozen for the first `position.freeze_epochs` epochs; at the start of epoch
`freeze_epochs` (counting from 0) its last `position.unfreeze_stages` stages start to train, at the
rate the cosine has reached by then. Each epoch is one shuffled pass (last short batch kept) over
the training images, each zoomed as the weak view zooms (`ssl.zoom_*`, the reference's RandZoom on
its training split); after each epoch the validation split is scored and the weights of the best
validation mAP so far (strictly better) are kept.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors
from medref_cli.data.views import configured_weak_view, normalise
from medref_cli.errors import MedrefError
from medref_cli.losses.position import position_loss, positive_weights
from medref_cli.models.position_predictor import PositionPredictor
from medref_cli.runtime.batches import epoch_batches
from medref_cli.runtime.position import predict_split
from medref_cli.runtime.position_metrics import multilabel_metrics
from medref_cli.runtime.precision import autocast
from medref_cli.training.metric_window import MetricSink

SELECT_METRIC = "mAP"


@dataclass
class PositionFit:
    best_state: dict
    best_epoch: int  # the selected epoch, counted from 1
    best_val: dict[str, float]
    epochs_run: int
    steps: int
    pos_weight: list[float] | None
    trainable_by_epoch: list[int] = field(default_factory=list)


def check_labels(train: SplitTensors, valid: SplitTensors) -> None:
    if len(train) == 0:
        raise MedrefError("no training images for the position predictor")
    if len(valid) == 0 or int(valid.labels.sum()) == 0:
        raise MedrefError("the valid split names no lung zone: its mAP, which selects the predictor, is undefined")


def optimizer_for(model: PositionPredictor, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    p = cfg.position
    return torch.optim.AdamW([{"params": list(model.head.parameters()), "lr": p.lr_head},
                              {"params": list(model.encoder.parameters()), "lr": p.lr_backbone}],
                             weight_decay=p.weight_decay)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def begin_epoch(model: PositionPredictor, epoch: int, cfg: ExperimentConfig) -> None:
    """Freeze the encoder before epoch 0; let its last stages train from epoch `freeze_epochs` on."""
    if epoch == 0:
        model.freeze_backbone()
    if epoch == cfg.position.freeze_epochs:
        model.unfreeze_last_stages(cfg.position.unfreeze_stages)


def fit_position(model: PositionPredictor, train: SplitTensors, valid: SplitTensors, cfg: ExperimentConfig,
                 log: MetricSink, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> PositionFit:
    """Train `model` in place (left holding its best weights); the fit's record. `on_epoch(epoch, values)`
    hears each epoch's logged values (with the best mAP so far)."""
    check_labels(train, valid)
    p = cfg.position
    device = train.images.device
    generator = torch.Generator().manual_seed(cfg.train.seed)
    optimizer = optimizer_for(model, cfg)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, p.epochs))
    weights = positive_weights(train.labels.float()).to(device) if p.pos_weight else None
    best_map, best_epoch, best_val, best_state = -math.inf, 0, {}, copy.deepcopy(model.state_dict())
    steps, counts = 0, []
    for epoch in range(p.epochs):
        begin_epoch(model, epoch, cfg)
        counts.append(trainable(model))
        model.train()
        batches = epoch_batches(len(train), p.batch_size, generator)
        if cfg.train.max_steps_per_epoch:
            batches = batches[: cfg.train.max_steps_per_epoch]
        total = 0.0
        for index in batches:
            rows = index.to(device)
            images = configured_weak_view(train.images[rows], None, generator, cfg.ssl).images
            with autocast(device, cfg.runtime.amp):
                logits = model(normalise(images))
            loss, terms = position_loss(logits.float(), train.labels[rows].float(), p.bce_mix, p.gamma_negative,
                                        p.gamma_positive, p.cardinality_weight, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            total += float(loss.detach()) * len(index)
            if steps % cfg.runtime.log_every == 0:
                log({"train_loss": float(loss.detach()), **{f"loss_{k}": float(v.detach()) for k, v in terms.items()}},
                    steps)
        lrs = [g["lr"] for g in optimizer.param_groups]
        scheduler.step()
        probs = predict_split(model, valid, p.batch_size, cfg.runtime.amp)
        val = multilabel_metrics(valid.labels.cpu().numpy(), probs.numpy(), p.threshold)
        epoch_loss = total / max(1, sum(len(b) for b in batches))
        log({"epoch_train_loss": epoch_loss, "lr_head": lrs[0],
             "lr_backbone": lrs[1], "trainable_params": float(counts[-1]), "val_mAP": val["mAP"],
             "val_macro_f1": val["macro_f1"], "val_exact_match": val["exact_match"]}, steps)
        if val[SELECT_METRIC] > best_map:
            best_map, best_epoch, best_val = val[SELECT_METRIC], epoch + 1, val  # counted from 1, as burn-in's
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": epoch_loss, "val_mAP": val["mAP"], "val_macro_f1": val["macro_f1"],
                             "best_mAP": best_map, "best_epoch": best_epoch})
    model.load_state_dict(best_state)
    return PositionFit(best_state, best_epoch, best_val, p.epochs, steps,
                       None if weights is None else weights.cpu().tolist(), counts)
