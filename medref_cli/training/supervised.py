"""The supervised (burn-in) loop: labeled batches only, DiceCE on logits, best by validation Dice.

One step: gather a labeled batch on the device, weak view (random zoom, image and mask alike),
per-image normalisation, cached text features, forward, DiceCE, AdamW step, cosine schedule.
Losses stay on the device and are read back only every `log_every` steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors
from medref_cli.data.views import to_unit, weak_view
from medref_cli.evaluation.evaluate import evaluate_split
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.training.batches import epoch_batches, model_input, take
from medref_cli.training.precision import autocast
from medref_cli.training.progress import Progress
from medref_cli.training.schedules import build_cosine_scheduler, build_optimizer

MetricSink = Callable[[dict[str, float], int], None]


@dataclass
class FitResult:
    best_val_dice: float
    best_epoch: int
    epochs_run: int
    steps: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


def steps_per_epoch(n: int, batch_size: int, cap: int) -> int:
    steps = max(1, math.ceil(n / batch_size))
    return min(steps, cap) if cap > 0 else steps


class BestKeeper:
    """Keeps the state dict of the best validation Dice so far (on the CPU), and counts patience."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -1.0
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        self.stale_epochs = 0

    def offer(self, score: float, epoch: int, module: nn.Module) -> bool:
        if score > self.best:
            self.best, self.best_epoch, self.stale_epochs = score, epoch, 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            return True
        self.stale_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.stale_epochs >= self.patience


def supervised_loss(
    model: nn.Module,
    labeled: SplitTensors,
    index: torch.Tensor,
    text_cache: TextFeatureCache,
    loss_fn: DiceCELoss,
    cfg: ExperimentConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """DiceCE of the model on the weak view of one labeled batch."""
    batch = take(labeled, index)
    weak = weak_view(to_unit(batch.images), batch.masks, generator, (cfg.ssl.zoom_min, cfg.ssl.zoom_max))
    device = labeled.images.device
    with autocast(device, cfg.runtime.amp):
        out = model(model_input(weak.images, cfg.runtime.channels_last), text_cache.encode(batch.captions))
    return loss_fn(out.logits.float(), weak.masks.float())


def fit_supervised(
    model: nn.Module,
    labeled: SplitTensors,
    valid: SplitTensors,
    text_cache: TextFeatureCache,
    cfg: ExperimentConfig,
    epochs: int,
    log: MetricSink,
    progress: Progress,
) -> FitResult:
    """Train on `labeled` for `epochs`; leave the model holding its best-validation weights."""
    device = labeled.images.device
    order_gen = torch.Generator().manual_seed(cfg.train.seed)
    view_gen = torch.Generator(device=device).manual_seed(cfg.train.seed + 1)
    per_epoch = steps_per_epoch(len(labeled), cfg.train.batch_size, cfg.train.max_steps_per_epoch)
    total = max(1, per_epoch * epochs)
    optimizer = build_optimizer(model, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = build_cosine_scheduler(optimizer, total, cfg.train.min_lr)
    loss_fn = DiceCELoss(cfg.train.dice_weight, cfg.train.ce_weight)
    keeper = BestKeeper(cfg.train.patience)
    history: list[dict[str, float]] = []
    step, epoch = 0, 0
    running = torch.zeros((), device=device)
    progress.start("burn-in", total)
    for epoch in range(1, epochs + 1):
        model.train()
        for index in epoch_batches(len(labeled), cfg.train.batch_size, order_gen)[:per_epoch]:
            loss = supervised_loss(model, labeled, index, text_cache, loss_fn, cfg, view_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.detach()
            step += 1
            if step % cfg.runtime.log_every == 0 or step == total:
                n = (step - 1) % cfg.runtime.log_every + 1
                value = float(running) / n
                running.zero_()
                log({"train_loss": value, "lr": scheduler.get_last_lr()[0]}, step)
                progress.update(step, loss=value)
            else:
                progress.update(step)
        if epoch % cfg.train.val_every == 0 or epoch == epochs:
            val = evaluate_split(model, valid, text_cache, cfg.eval.threshold, cfg.train.batch_size,
                                 cfg.runtime.amp, cfg.runtime.channels_last)
            val_dice = val.metrics["dice_global"]
            keeper.offer(val_dice, epoch, model)
            record = {"epoch": epoch, "val_dice_global": val_dice, "val_iou_global": val.metrics["iou_global"]}
            history.append(record)
            log({k: v for k, v in record.items() if k != "epoch"}, step)
            progress.update(step, dice=val_dice, epoch=epoch)
            if keeper.should_stop:
                break
    progress.stop()
    if keeper.state is not None:
        model.load_state_dict(keeper.state)
    return FitResult(keeper.best, keeper.best_epoch, epoch, step, keeper.should_stop, history)

