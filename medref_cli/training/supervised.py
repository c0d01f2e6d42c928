"""The supervised (burn-in) loop: labeled batches only, DiceCE on logits, best by validation Dice.

One step: gather a labeled batch on the device, weak view (random zoom, image and mask alike),
per-image normalisation, cached text features, forward, DiceCE, AdamW step, cosine schedule.
Losses stay on the device and are read back only every `log_every` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors
from medref_cli.data.views import to_unit, weak_view
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime import distributed
from medref_cli.runtime.batches import epoch_batches, model_input, sequential_batches, take
from medref_cli.runtime.build import seed_everything
from medref_cli.runtime.metrics import dice_from_counts, iou_from_counts
from medref_cli.runtime.precision import autocast
from medref_cli.runtime.scoring import pixel_counts
from medref_cli.runtime.step_model import step_model
from medref_cli.training.loop_state import (
    CheckpointWriter,
    LoopPosition,
    ProgressDisplay,
    RandomSource,
    cpu_tensors,
    restore_rng,
    rng_state,
)
from medref_cli.training.metric_window import MetricSink, MetricWindow
from medref_cli.training.schedules import build_cosine_scheduler, build_optimizer


@dataclass
class FitResult:
    best_val_dice: float
    best_epoch: int
    epochs_run: int
    steps: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    # validations at which the EMA teacher was found identical on every rank (several processes)
    teacher_checks: int = 0


def steps_per_epoch(n: int, batch_size: int, cap: int) -> int:
    """Batches of one pass; across N processes a last batch of fewer than N rows is dropped."""
    steps = max(1, math.ceil(n / batch_size))
    if 0 < n % batch_size < distributed.current().world and steps > 1:
        steps -= 1
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
            self.state = cpu_tensors(module.state_dict())
            return True
        self.stale_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.stale_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "stale_epochs": self.stale_epochs,
                "state": self.state}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(saved["best"]), int(saved["best_epoch"])
        self.stale_epochs, self.state = int(saved["stale_epochs"]), saved["state"]


@dataclass
class LoopParts:
    """What a resume checkpoint saves and restores of every training loop (the modules aside)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    keeper: BestKeeper
    sources: dict[str, RandomSource]
    position: LoopPosition
    history: list[dict[str, float]]

    def state_dict(self, model: nn.Module) -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "keeper": self.keeper.state_dict(),
                "rng": rng_state(self.sources), "position": self.position.state_dict(),
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Restore everything; the random states last, after anything that might draw from them."""
        model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.keeper.load_state_dict(state["keeper"])
        self.position = LoopPosition.from_state(state["position"])
        self.history = [dict(h) for h in state["history"]]
        restore_rng(state["rng"], self.sources)


def validation_scores(model: nn.Module, valid: SplitTensors, text_cache: TextFeatureCache,
                      cfg: ExperimentConfig) -> tuple[float, float]:
    """Global validation Dice and IoU. With several processes rank r scores batches r, r+N, ... and
    the pixel counts are summed over the ranks: every rank gets the integers one process counts."""
    dist = distributed.current()
    mine = sequential_batches(len(valid), cfg.train.batch_size)[dist.rank::dist.world]
    counts = pixel_counts(model, valid, text_cache, mine, cfg.eval.threshold, cfg.runtime.amp,
                          cfg.runtime.channels_last)
    tp, fp, fn = distributed.sum_counts(counts).cpu().unbind(0)
    return float(dice_from_counts(tp, fp, fn, 0.0)), float(iou_from_counts(tp, fp, fn, 0.0))


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
    batch = take(labeled, distributed.shard(index))
    weak = weak_view(to_unit(batch.images), batch.masks, generator, (cfg.ssl.zoom_min, cfg.ssl.zoom_max),
                     cfg.ssl.zoom_prob, cfg.ssl.zoom_mode)
    device = labeled.images.device
    text = text_cache.encode_student(batch.captions)
    with autocast(device, cfg.runtime.amp):
        out = model(model_input(weak.images, cfg.runtime.channels_last), text)
    return loss_fn(out.logits.float(), weak.masks.float())


def fit_supervised(
    model: nn.Module,
    labeled: SplitTensors,
    valid: SplitTensors,
    text_cache: TextFeatureCache,
    cfg: ExperimentConfig,
    epochs: int,
    log: MetricSink,
    progress: ProgressDisplay,
    checkpoints: CheckpointWriter | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train on `labeled` for `epochs`; leave the model holding its best-validation weights.

    `checkpoints` writes the resume state every few steps and at every epoch end; `resume` (a
    loaded resume state) continues a killed run exactly where that state was taken.
    """
    device = labeled.images.device
    if distributed.current().rank > 0:  # its own dropout draws; rank 0 keeps the single-process stream
        seed_everything(cfg.train.seed + distributed.seed_offset())
    order_gen = torch.Generator().manual_seed(cfg.train.seed)
    view_gen = torch.Generator(device=device).manual_seed(cfg.train.seed + 1 + distributed.seed_offset())
    per_epoch = steps_per_epoch(len(labeled), cfg.train.batch_size, cfg.train.max_steps_per_epoch)
    total = max(1, per_epoch * epochs)
    optimizer = build_optimizer(model, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    parts = LoopParts(optimizer, build_cosine_scheduler(optimizer, total, cfg.train.min_lr),
                      BestKeeper(cfg.train.patience), {"order": order_gen, "view": view_gen},
                      LoopPosition(done=epochs < 1), [])
    loss_fn = DiceCELoss(cfg.train.dice_weight, cfg.train.ce_weight)
    window = MetricWindow(cfg.runtime.log_every, device)
    if resume is not None:
        parts.load_state_dict(model, resume)
        # checkpoints of earlier releases keep the running train loss as "running"
        window.load_state_dict(resume["sums"] if "sums" in resume else {"train_loss": resume["running"]})
    pos, keeper, scheduler = parts.position, parts.keeper, parts.scheduler
    if resume is not None:  # the saved random states are rank 0's
        distributed.reseed_rank([view_gen], cfg.train.seed + 1, pos.step)
    stepped = step_model(model, device, uses_embed=False, compile_model=cfg.runtime.compile)

    def save() -> None:
        if checkpoints is not None:
            checkpoints.save({**parts.state_dict(model), "sums": window.state_dict()})

    progress.start("burn-in", total)
    progress.update(pos.step)
    while not pos.done:
        model.train()
        if pos.batches is None:
            pos.batches = distributed.trim_batches(
                epoch_batches(len(labeled), cfg.train.batch_size, order_gen))[:per_epoch]
        while pos.batch_pos < len(pos.batches):
            loss = supervised_loss(stepped, labeled, pos.batches[pos.batch_pos], text_cache, loss_fn, cfg, view_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            window.add({"train_loss": loss})
            pos.step += 1
            pos.batch_pos += 1
            window.close_step(pos.step, total, log, progress, "train_loss", lambda: {"lr": scheduler.get_last_lr()[0]})
            if checkpoints is not None and checkpoints.due(pos.step, pos.batch_pos == len(pos.batches)):
                save()
        epoch = pos.epoch
        if epoch % cfg.train.val_every == 0 or epoch == epochs:
            val_dice, val_iou = validation_scores(model, valid, text_cache, cfg)
            keeper.offer(val_dice, epoch, model)
            record = {"epoch": epoch, "val_dice_global": val_dice, "val_iou_global": val_iou}
            parts.history.append(record)
            log({k: v for k, v in record.items() if k != "epoch"}, pos.step)
            progress.update(pos.step, dice=val_dice, epoch=epoch)
        pos.end_epoch(last=epoch >= epochs or keeper.should_stop)
        save()
    progress.stop()
    if keeper.state is not None:
        model.load_state_dict(keeper.state)
    return FitResult(keeper.best, keeper.best_epoch, pos.epochs_run, pos.step, keeper.should_stop, parts.history)
