"""The semi-supervised phase: EMA teacher, unlabeled epochs, labeled batches drawn to match.

An epoch is one pass over the unlabeled split (capped by train.max_steps_per_epoch); labeled
batches are drawn with replacement (train.labeled_draw replacement, the reference) or from
endless shuffled passes over the labeled split, so every step sees a full labeled batch.
Schedules run on the SSL epochs done (ssl.ramp_every epoch, the reference; or the fraction, per
step): the EMA momentum rises from ssl.ema_momentum_start to ssl.ema_momentum over
ssl.ema_warmup_epochs (0 epochs = constant), lambda_u ramps linearly from 0 over
ssl.lambda_u_ramp_epochs. The teacher's float buffers (BatchNorm statistics, if any) are
averaged like its parameters. With a burn-in hand-off (`phases.Handoff`) the phase continues the
burn-in's optimiser and LR schedule (train.optimizer_scope run), its EMA teacher
(ssl.ema_in_burnin) and its model selection (train.select_over run: burn-in validations compete,
patience and min_epochs count run epochs). Model selection: validation Dice of the teacher and/or
student (ssl.select); the weights of both at the selected validation are kept.
"""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import torch
from torch import nn

from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime import distributed
from medref_cli.runtime.batches import epoch_batches, take
from medref_cli.runtime.build import seed_everything
from medref_cli.runtime.step_model import step_model
from medref_cli.training.ema import EMATeacher
from medref_cli.training.loop_state import (
    CheckpointWriter,
    CycledBatches,
    LoopPosition,
    ProgressDisplay,
    cpu_tensors,
)
from medref_cli.training.metric_window import MetricSink, MetricWindow
from medref_cli.training.phases import (
    Handoff,
    ReplacementBatches,
    build_schedule,
    burnin_steps_per_epoch,
    ramp_epochs_in,
    schedule_ticks,
    ssl_steps_per_epoch,
    steps_lr_every_step,
)
from medref_cli.training.schedules import (
    build_optimizer,
    ema_momentum,
    lambda_u_weight,
)
from medref_cli.training.ssl_step import StepWeights, ssl_loss
from medref_cli.training.supervised import (
    BestKeeper,
    FitResult,
    LoopParts,
    validation_scores,
)


def step_weights(cfg: ExperimentConfig, epochs_in: float) -> StepWeights:
    lam_u = lambda_u_weight(epochs_in, cfg.ssl.lambda_u, cfg.ssl.lambda_u_ramp_epochs)
    itc_u = cfg.ssl.lambda_itcl_unsup * (lam_u if cfg.ssl.itcl_unsup_follows_lambda_u else 1.0)
    return StepWeights(lam_u, cfg.ssl.lambda_itcl_sup, itc_u)


def momentum_at(cfg: ExperimentConfig, epochs_in: float) -> float:
    return ema_momentum(epochs_in, cfg.ssl.ema_momentum_start, cfg.ssl.ema_momentum, cfg.ssl.ema_warmup_epochs)


def _validate(models: dict[str, nn.Module], valid: SplitTensors, text_cache: TextFeatureCache,
              cfg: ExperimentConfig) -> dict[str, float]:
    return {name: validation_scores(m, valid, text_cache, cfg)[0] for name, m in models.items()}


def _schedule_values(cfg: ExperimentConfig, weights: StepWeights, scheduler, teacher: EMATeacher | None,
                     epochs_in: float) -> dict[str, float]:
    values = {"lambda_u": weights.lambda_u, "lr": scheduler.get_last_lr()[0]}
    if teacher is not None:
        values["ema_momentum"] = momentum_at(cfg, epochs_in)
    return values


def _candidates(cfg: ExperimentConfig, student: nn.Module, teacher: EMATeacher | None) -> dict[str, nn.Module]:
    if teacher is None or cfg.ssl.select == "student":
        return {"student": student}
    if cfg.ssl.select == "teacher":
        return {"teacher": teacher.model}
    return {"teacher": teacher.model, "student": student}


def _pair(student: nn.Module, teacher: EMATeacher | None) -> dict[str, dict[str, torch.Tensor]]:
    pair = {"student": cpu_tensors(student.state_dict())}
    if teacher is not None:
        pair["teacher"] = cpu_tensors(teacher.state_dict())
    return pair


def fit_ssl(
    student: nn.Module,
    labeled: SplitTensors,
    unlabeled: SplitTensors,
    valid: SplitTensors,
    text_cache: TextFeatureCache,
    cfg: ExperimentConfig,
    log: MetricSink,
    progress: ProgressDisplay,
    checkpoints: CheckpointWriter | None = None,
    resume: dict[str, Any] | None = None,
    handoff: Handoff | None = None,
    burnin_best: dict[str, torch.Tensor] | None = None,
) -> tuple[FitResult, str]:
    """Train; leave `student` holding the selected best weights. Returns (result, which model won).

    The process-wide random states are seeded at the start, so the phase computes the same
    whether its burn-in ran in this process or was reused. `checkpoints` writes the resume state;
    `resume` continues from one. `handoff` and `burnin_best` (the burn-in's best weights) carry
    the burn-in over (module docstring).
    """
    device = labeled.images.device
    seed = cfg.train.seed
    per_rank = distributed.seed_offset()  # 0 in one process; the batch order is shared by every rank
    seed_everything(seed + 14 + per_rank)
    order_gen = torch.Generator().manual_seed(seed + 11)
    view_gen = torch.Generator(device=device).manual_seed(seed + 12 + per_rank)
    text_rng = random.Random(seed + 13 + per_rank)
    unl_batch = cfg.train.unlabeled_batch_size or cfg.train.batch_size
    per_epoch = ssl_steps_per_epoch(cfg, len(unlabeled))
    epochs = cfg.train.epochs
    total = max(1, per_epoch * epochs)
    optimizer = build_optimizer(student, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    burnin_per_epoch = burnin_steps_per_epoch(cfg, len(labeled), len(unlabeled))
    scheduler = build_schedule(optimizer, cfg, schedule_ticks(cfg, "ssl", burnin_per_epoch, per_epoch))
    keeper = BestKeeper(cfg.train.patience, cfg.train.min_delta, cfg.train.min_epochs)
    epoch_offset = 0  # run epochs before this phase that the selection counts
    if handoff is not None and cfg.train.optimizer_scope == "run":
        optimizer.load_state_dict(handoff.optimizer)
        scheduler.load_state_dict(handoff.scheduler)
    if handoff is not None and cfg.train.select_over == "run":
        keeper.load_state_dict({**handoff.keeper, "state": burnin_best})
        epoch_offset = handoff.epochs_run
    parts = LoopParts(optimizer, scheduler, keeper, {"order": order_gen, "view": view_gen, "text": text_rng},
                      LoopPosition(done=epochs < 1), [])
    loss_fn = DiceCELoss(cfg.train.dice_weight, cfg.train.ce_weight)
    # wrapped before the teacher is copied: several processes start from rank 0's weights
    stepped = step_model(student, device, uses_embed=cfg.ssl.contrastive != "none",
                         compile_model=cfg.runtime.compile)
    teacher = EMATeacher(student) if cfg.ssl.ema else None
    if teacher is not None and handoff is not None and handoff.teacher is not None and cfg.ssl.ema_in_burnin:
        teacher.load_state_dict(handoff.teacher)
    teacher_model = teacher.model if teacher is not None else student
    stream = ReplacementBatches if cfg.train.labeled_draw == "replacement" else CycledBatches
    labeled_stream = stream(len(labeled), cfg.train.batch_size, order_gen)
    winner = "student"
    # both models' weights at the selected validation (as the phase began while a burn-in
    # validation is the best): `medref evaluate --weights student|teacher`
    best_pair = _pair(student, teacher)
    parts_checked = 0  # validations at which the teacher was compared across ranks
    window = MetricWindow(cfg.runtime.log_every, device)
    if resume is not None:
        parts.load_state_dict(student, resume)
        if teacher is not None:
            teacher.load_state_dict(resume["teacher"])
        labeled_stream.load_state_dict(resume["labeled_stream"])
        window.load_state_dict(resume["sums"])
        winner = resume["winner"]
        best_pair = resume.get("best_pair", best_pair)
        epoch_offset = int(resume.get("epoch_offset", 0))
    pos, keeper, scheduler = parts.position, parts.keeper, parts.scheduler
    every_step = steps_lr_every_step(cfg)
    if resume is not None:  # the saved random states are rank 0's
        distributed.reseed_rank([view_gen, text_rng], seed + 12, pos.step)

    def save() -> None:
        if checkpoints is not None:
            checkpoints.save({**parts.state_dict(student), "teacher": None if teacher is None else teacher.state_dict(),
                              "labeled_stream": labeled_stream.state_dict(), "sums": window.state_dict(),
                              "winner": winner, "best_pair": best_pair,
                              "epoch_offset": epoch_offset})

    progress.start("semi-supervised", total)
    progress.update(pos.step)
    while not pos.done:
        student.train()
        if pos.batches is None:
            pos.batches = distributed.trim_batches(epoch_batches(len(unlabeled), unl_batch, order_gen))[:per_epoch]
        while pos.batch_pos < len(pos.batches):
            epochs_in = ramp_epochs_in(cfg, pos.step, per_epoch)
            weights = step_weights(cfg, epochs_in)
            loss, step_parts = ssl_loss(stepped, teacher_model, take(labeled, distributed.shard(next(labeled_stream))),
                                        take(unlabeled, distributed.shard(pos.batches[pos.batch_pos])), text_cache,
                                        loss_fn, cfg, weights, view_gen, text_rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if every_step:
                scheduler.step()
            if teacher is not None:
                teacher.update(student, momentum_at(cfg, epochs_in))
            window.add(step_parts)
            pos.step += 1
            pos.batch_pos += 1
            window.close_step(pos.step, total, log, progress, "loss",
                              partial(_schedule_values, cfg, weights, scheduler, teacher, epochs_in))
            if checkpoints is not None and checkpoints.due(pos.step, pos.batch_pos == len(pos.batches)):
                save()
        epoch = pos.epoch
        if epoch % cfg.train.val_every == 0 or epoch == epochs:
            candidates = _candidates(cfg, student, teacher)
            if teacher is not None:
                distributed.check_identical(teacher.model, "EMA teacher")
                parts_checked += distributed.current().active
            scores = _validate(candidates, valid, text_cache, cfg)  # the same on every rank
            name = max(scores, key=scores.get)
            if keeper.offer(scores[name], epoch + epoch_offset, candidates[name]):
                winner = name
                best_pair = _pair(student, teacher)
            record = {f"val_dice_global_{k}": v for k, v in scores.items()}
            parts.history.append({"epoch": epoch, **record})
            log(record, pos.step)
            progress.update(pos.step, dice=scores[name], epoch=epoch)
        if not every_step:
            scheduler.step()
        pos.end_epoch(last=epoch >= epochs or keeper.should_stop)
        save()
    progress.stop()
    if keeper.state is not None:
        student.load_state_dict(keeper.state)
    return FitResult(keeper.best, keeper.best_epoch, pos.epochs_run, pos.step, keeper.should_stop,
                     parts.history, teacher_checks=parts_checked, weights=best_pair), winner
