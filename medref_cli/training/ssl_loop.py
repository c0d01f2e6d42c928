"""The semi-supervised phase: EMA teacher, unlabeled epochs, labeled batches cycled to match.

An epoch is one pass over the unlabeled split (capped by train.max_steps_per_epoch); labeled
batches are drawn from endless shuffled passes over the labeled split, so every step sees a
full labeled batch. Schedules run on the fractional epoch since the SSL phase began: the EMA
momentum rises from ssl.ema_momentum_start to ssl.ema_momentum over ssl.ema_warmup_epochs (the
reference implementation's warm-up; 0 epochs = constant), lambda_u ramps linearly from 0 over
ssl.lambda_u_ramp_epochs. The teacher's float buffers (BatchNorm statistics, if any) are
averaged like its parameters. Model selection: validation Dice of the teacher and/or student
(ssl.select), the best weights kept.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors
from medref_cli.evaluation.evaluate import evaluate_split
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.training.batches import cycled_batches, epoch_batches, take
from medref_cli.training.ema import EMATeacher
from medref_cli.training.progress import Progress
from medref_cli.training.schedules import build_cosine_scheduler, build_optimizer, ema_momentum, lambda_u_weight
from medref_cli.training.ssl_step import StepWeights, ssl_loss
from medref_cli.training.supervised import BestKeeper, FitResult, MetricSink, steps_per_epoch


def step_weights(cfg: ExperimentConfig, epochs_in: float) -> StepWeights:
    lam_u = lambda_u_weight(epochs_in, cfg.ssl.lambda_u, cfg.ssl.lambda_u_ramp_epochs)
    itc_u = cfg.ssl.lambda_itcl_unsup * (lam_u if cfg.ssl.itcl_unsup_follows_lambda_u else 1.0)
    return StepWeights(lam_u, cfg.ssl.lambda_itcl_sup, itc_u)


def momentum_at(cfg: ExperimentConfig, epochs_in: float) -> float:
    return ema_momentum(epochs_in, cfg.ssl.ema_momentum_start, cfg.ssl.ema_momentum, cfg.ssl.ema_warmup_epochs)


def _validate(models: dict[str, nn.Module], valid: SplitTensors, text_cache: TextFeatureCache,
              cfg: ExperimentConfig) -> dict[str, float]:
    return {
        name: evaluate_split(m, valid, text_cache, cfg.eval.threshold, cfg.train.batch_size, cfg.runtime.amp,
                             cfg.runtime.channels_last).metrics["dice_global"]
        for name, m in models.items()
    }


def fit_ssl(
    student: nn.Module,
    labeled: SplitTensors,
    unlabeled: SplitTensors,
    valid: SplitTensors,
    text_cache: TextFeatureCache,
    cfg: ExperimentConfig,
    log: MetricSink,
    progress: Progress,
) -> tuple[FitResult, str]:
    """Train; leave `student` holding the selected best weights. Returns (result, which model won)."""
    device = labeled.images.device
    seed = cfg.train.seed
    order_gen = torch.Generator().manual_seed(seed + 11)
    view_gen = torch.Generator(device=device).manual_seed(seed + 12)
    text_rng = random.Random(seed + 13)
    unl_batch = cfg.train.unlabeled_batch_size or cfg.train.batch_size
    per_epoch = steps_per_epoch(len(unlabeled), unl_batch, cfg.train.max_steps_per_epoch)
    epochs = cfg.train.epochs
    total = max(1, per_epoch * epochs)
    optimizer = build_optimizer(student, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = build_cosine_scheduler(optimizer, total, cfg.train.min_lr)
    loss_fn = DiceCELoss(cfg.train.dice_weight, cfg.train.ce_weight)
    teacher = EMATeacher(student) if cfg.ssl.ema else None
    teacher_model = teacher.model if teacher is not None else student
    labeled_stream = cycled_batches(len(labeled), cfg.train.batch_size, order_gen)
    keeper = BestKeeper(cfg.train.patience)
    winner = "student"
    history: list[dict[str, float]] = []
    sums: dict[str, torch.Tensor] = {}
    step, epoch = 0, 0
    progress.start("semi-supervised", total)
    for epoch in range(1, epochs + 1):
        student.train()
        for u_index in epoch_batches(len(unlabeled), unl_batch, order_gen)[:per_epoch]:
            epochs_in = step / per_epoch
            weights = step_weights(cfg, epochs_in)
            loss, parts = ssl_loss(student, teacher_model, take(labeled, next(labeled_stream)),
                                   take(unlabeled, u_index), text_cache, loss_fn, cfg, weights, view_gen, text_rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if teacher is not None:
                teacher.update(student, momentum_at(cfg, epochs_in))
            for k, v in parts.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            step += 1
            if step % cfg.runtime.log_every == 0 or step == total:
                n = (step - 1) % cfg.runtime.log_every + 1
                values = {k: float(v) / n for k, v in sums.items()}
                sums.clear()
                values.update({"lambda_u": weights.lambda_u, "lr": scheduler.get_last_lr()[0]})
                if teacher is not None:
                    values["ema_momentum"] = momentum_at(cfg, epochs_in)
                log(values, step)
                progress.update(step, loss=values["loss"])
            else:
                progress.update(step)
        if epoch % cfg.train.val_every == 0 or epoch == epochs:
            candidates = {"student": student}
            if teacher is not None and cfg.ssl.select in ("teacher", "best"):
                candidates = {"teacher": teacher.model} if cfg.ssl.select == "teacher" else {
                    "teacher": teacher.model, "student": student}
            scores = _validate(candidates, valid, text_cache, cfg)
            name = max(scores, key=scores.get)
            if keeper.offer(scores[name], epoch, candidates[name]):
                winner = name
            record = {f"val_dice_global_{k}": v for k, v in scores.items()}
            history.append({"epoch": epoch, **record})
            log(record, step)
            progress.update(step, dice=scores[name], epoch=epoch)
            if keeper.should_stop:
                break
    progress.stop()
    if keeper.state is not None:
        student.load_state_dict(keeper.state)
    return FitResult(keeper.best, keeper.best_epoch, epoch, step, keeper.should_stop, history), winner
