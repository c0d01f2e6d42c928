"""The supervised (burn-in) loop: labeled batches only, DiceCE on logits, best by validation Dice.

One step: gather a labeled batch on the device, weak view (random zoom, image and mask alike),
per-image normalisation, cached text features, forward, DiceCE (+ lambda_itcl_sup x labeled ITCL
with train.burnin_itcl), AdamW step, cosine schedule, EMA teacher update (ssl.ema_in_burnin, at
ssl.ema_momentum_start). Epoch length, labeled draws and the schedule: `phases`. Losses stay on
the device and are read back only every `log_every` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors
from medref_cli.data.views import configured_weak_view
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime import distributed
from medref_cli.runtime.batches import model_input, sequential_batches, take
from medref_cli.runtime.build import seed_everything
from medref_cli.runtime.metrics import dice_from_counts, iou_from_counts
from medref_cli.runtime.precision import autocast
from medref_cli.runtime.scoring import pixel_counts
from medref_cli.runtime.step_model import core, step_model
from medref_cli.training.ema import EMATeacher
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
from medref_cli.training.phases import (
    Handoff,
    build_schedule,
    burnin_steps_per_epoch,
    epoch_plan,
    labeled_epoch,
    schedule_ticks,
    ssl_steps_per_epoch,
    steps_lr_every_step,
    steps_per_epoch,
)
from medref_cli.training.schedules import build_optimizer, ema_momentum

__all__ = ["BestKeeper", "FitResult", "LoopParts", "fit_supervised", "steps_per_epoch", "validation_scores"]


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
    # the last weights, optimiser, schedule, teacher and selection state (a burn-in that SSL continues)
    handoff: Handoff | None = None
    # the student's and the EMA teacher's weights at the selected validation (a train run keeps both)
    weights: dict[str, dict[str, torch.Tensor]] | None = None


class BestKeeper:
    """Keeps the weights of the best validation Dice so far (on the CPU): any higher score wins (the
    reference's checkpoint rule). Patience counts like its early stopping: only a score above the
    best-so-far-for-stopping by more than `min_delta` resets it, and no stop before `min_epochs`
    epochs (counted by the epoch numbers offered: run epochs when the selection spans the run)."""

    def __init__(self, patience: int, min_delta: float = 0.0, min_epochs: int = 0) -> None:
        self.patience, self.min_delta, self.min_epochs = patience, min_delta, min_epochs
        self.best = -1.0
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        self.stale_epochs = 0
        self.stop_best = -math.inf
        self.last_epoch = 0

    def offer(self, score: float, epoch: int, module: nn.Module) -> bool:
        self.last_epoch = epoch
        if score - self.min_delta > self.stop_best:
            self.stop_best, self.stale_epochs = score, 0
        else:
            self.stale_epochs += 1
        if score > self.best:
            self.best, self.best_epoch = score, epoch
            self.state = cpu_tensors(module.state_dict())
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.stale_epochs >= self.patience and self.last_epoch >= self.min_epochs

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "stale_epochs": self.stale_epochs,
                "stop_best": self.stop_best, "last_epoch": self.last_epoch, "state": self.state}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(saved["best"]), int(saved["best_epoch"])
        self.stale_epochs, self.state = int(saved["stale_epochs"]), saved["state"]
        # states of earlier releases: stopping counted from the best score
        self.stop_best = float(saved.get("stop_best", self.best))
        self.last_epoch = int(saved.get("last_epoch", 0))


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
    """The loss of one labeled batch (`supervised_loss_parts` without its parts)."""
    return supervised_loss_parts(model, labeled, index, text_cache, loss_fn, cfg, generator)[0]


def supervised_loss_parts(
    model: nn.Module,
    labeled: SplitTensors,
    index: torch.Tensor,
    text_cache: TextFeatureCache,
    loss_fn: DiceCELoss,
    cfg: ExperimentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DiceCE of the model on the weak view of one labeled batch, plus lambda_itcl_sup x the labeled
    contrastive term when train.burnin_itcl is on. Returns (loss, detached parts)."""
    from medref_cli.training.ssl_step import contrastive_embed_term, soft_position_inputs

    batch = take(labeled, distributed.shard(index))
    weak = configured_weak_view(batch.images, batch.masks, generator, cfg.ssl)
    device = labeled.images.device
    captions, positions = soft_position_inputs(cfg, batch.captions, batch.labels, generator)
    text = text_cache.encode_student(captions)
    text = text if positions is None else text.with_positions(positions)
    with autocast(device, cfg.runtime.amp):
        out = model(model_input(weak.images, cfg.runtime.channels_last), text)
    loss = loss_fn(out.logits.float(), weak.masks.float())
    parts = {"train_loss": loss.detach()}
    if uses_itcl(cfg):
        itc = contrastive_embed_term(core(model), (out.logits, out.fused, text), batch.labels, cfg)
        loss = loss + cfg.ssl.lambda_itcl_sup * itc
        parts.update({"loss_itc_sup": itc.detach(), "train_loss": loss.detach()})
    return loss, parts


def uses_itcl(cfg: ExperimentConfig) -> bool:
    return cfg.train.burnin_itcl and cfg.ssl.contrastive != "none" and cfg.ssl.lambda_itcl_sup > 0


def burnin_teacher(cfg: ExperimentConfig, phase: str, model: nn.Module) -> EMATeacher | None:
    """The EMA teacher a burn-in keeps (ssl.ema_in_burnin); none for the supervised control."""
    return EMATeacher(model) if phase == "burnin" and cfg.ssl.ema and cfg.ssl.ema_in_burnin else None


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
    n_unlabeled: int = 0,
    phase: str = "burnin",
) -> FitResult:
    """Train on `labeled` for `epochs`; leave the model holding its best-validation weights.

    `n_unlabeled` (the size of the unlabeled split) sets the epoch length (`phases`); `phase` is
    burnin (SSL may continue from it: the result carries the hand-off) or supervised (the
    step-matched control). `checkpoints` writes the resume state every few steps and at every
    epoch end; `resume` (a loaded resume state) continues a killed run exactly where it was taken.
    """
    device = labeled.images.device
    if distributed.current().rank > 0:  # its own dropout draws; rank 0 keeps the single-process stream
        seed_everything(cfg.train.seed + distributed.seed_offset())
    order_gen = torch.Generator().manual_seed(cfg.train.seed)
    view_gen = torch.Generator(device=device).manual_seed(cfg.train.seed + 1 + distributed.seed_offset())
    per_epoch = burnin_steps_per_epoch(cfg, len(labeled), n_unlabeled)
    plan = epoch_plan(cfg, len(labeled), n_unlabeled, epochs, phase)
    total = max(1, sum(plan))
    ssl_per_epoch = ssl_steps_per_epoch(cfg, n_unlabeled) if n_unlabeled else per_epoch
    optimizer = build_optimizer(model, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = build_schedule(optimizer, cfg, schedule_ticks(cfg, phase, per_epoch, ssl_per_epoch))
    parts = LoopParts(optimizer, scheduler, BestKeeper(cfg.train.patience, cfg.train.min_delta, cfg.train.min_epochs),
                      {"order": order_gen, "view": view_gen}, LoopPosition(done=epochs < 1), [])
    loss_fn = DiceCELoss(cfg.train.dice_weight, cfg.train.ce_weight)
    window = MetricWindow(cfg.runtime.log_every, device)
    stepped = step_model(model, device, uses_embed=uses_itcl(cfg), compile_model=cfg.runtime.compile)
    # copied after the wrap: several processes start from rank 0's weights
    teacher = burnin_teacher(cfg, phase, stepped)
    momentum = ema_momentum(0.0, cfg.ssl.ema_momentum_start, cfg.ssl.ema_momentum, cfg.ssl.ema_warmup_epochs)
    if resume is not None:
        parts.load_state_dict(model, resume)
        # checkpoints of earlier releases keep the running train loss as "running"
        window.load_state_dict(resume["sums"] if "sums" in resume else {"train_loss": resume["running"]})
        if teacher is not None and resume.get("teacher") is not None:
            teacher.load_state_dict(resume["teacher"])
    pos, keeper = parts.position, parts.keeper
    if resume is not None:  # the saved random states are rank 0's
        distributed.reseed_rank([view_gen], cfg.train.seed + 1, pos.step)
    every_step = steps_lr_every_step(cfg)

    def save() -> None:
        if checkpoints is not None:
            checkpoints.save({**parts.state_dict(model), "sums": window.state_dict(),
                              "teacher": None if teacher is None else teacher.state_dict()})

    progress.start("burn-in" if phase == "burnin" else "supervised", total)
    progress.update(pos.step)
    while not pos.done:
        model.train()
        if pos.batches is None:
            ssl_like = phase == "supervised" and pos.epoch > cfg.train.burnin_epochs
            pos.batches = labeled_epoch(cfg, len(labeled), n_unlabeled, plan[pos.epoch - 1], order_gen, ssl_like)
        while pos.batch_pos < len(pos.batches):
            loss, step_parts = supervised_loss_parts(stepped, labeled, pos.batches[pos.batch_pos], text_cache, loss_fn,
                                               cfg, view_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if every_step:
                scheduler.step()
            if teacher is not None:
                teacher.update(model, momentum)
            window.add(step_parts)
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
        if not every_step:
            scheduler.step()
        pos.end_epoch(last=epoch >= epochs or keeper.should_stop)
        save()
    progress.stop()
    handoff = Handoff(cpu_tensors(model.state_dict()), optimizer.state_dict(), scheduler.state_dict(),
                      None if teacher is None else cpu_tensors(teacher.state_dict()),
                      {k: v for k, v in keeper.state_dict().items() if k != "state"}, pos.epochs_run, pos.step)
    if keeper.state is not None:
        model.load_state_dict(keeper.state)
    return FitResult(keeper.best, keeper.best_epoch, pos.epochs_run, pos.step, keeper.should_stop, parts.history,
                     handoff=handoff)
