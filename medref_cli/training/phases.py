"""How long the phases are and what carries over from burn-in to the semi-supervised phase.

- Epoch length. An SSL epoch is one pass over the unlabeled split. A burn-in epoch is as long
  (`train.burnin_epoch: unlabeled`, the reference: QaTa-COV19 at 1% = 57 labeled and 5,659
  unlabeled images, ceil(5659 / 32) = 177 steps an epoch, 885 steps for 5 epochs), or one pass
  over the labeled split (`labeled`). Without unlabeled data (ratio 1.0) an epoch is a labeled pass.
- Labeled batches in epochs counted by the unlabeled pass: drawn with replacement
  (`train.labeled_draw: replacement`, the reference's RandomSampler) or cycled shuffled passes.
- The LR schedule: a cosine from train.lr to train.min_lr over `train.lr_period_epochs` (0 = the
  whole training length), changing at epoch ends (`train.lr_step: epoch`) or every step; with
  `train.optimizer_scope: run` one AdamW and one schedule run through burn-in and SSL.
- The hand-off: what the SSL phase continues from (`Handoff`): the last burn-in weights, the
  optimiser and schedule state, the EMA teacher (updated through burn-in when ssl.ema_in_burnin)
  and the model selection so far (burn-in validations included when train.select_over is run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from medref_cli.config import ExperimentConfig
from medref_cli.runtime import distributed
from medref_cli.runtime.batches import epoch_batches


def steps_per_epoch(n: int, batch_size: int, cap: int) -> int:
    """Batches of one pass; across N processes a last batch of fewer than N rows is dropped."""
    steps = max(1, math.ceil(n / batch_size))
    if 0 < n % batch_size < distributed.current().world and steps > 1:
        steps -= 1
    return min(steps, cap) if cap > 0 else steps


def unlabeled_batch(cfg: ExperimentConfig) -> int:
    return cfg.train.unlabeled_batch_size or cfg.train.batch_size


def ssl_steps_per_epoch(cfg: ExperimentConfig, n_unlabeled: int) -> int:
    """Steps of one SSL epoch: one pass over the unlabeled split."""
    return steps_per_epoch(n_unlabeled, unlabeled_batch(cfg), cfg.train.max_steps_per_epoch)


def counts_unlabeled(cfg: ExperimentConfig, n_unlabeled: int) -> bool:
    """Whether a burn-in epoch is as long as the unlabeled pass (else: a pass over the labeled split)."""
    return cfg.train.burnin_epoch == "unlabeled" and n_unlabeled > 0


def burnin_steps_per_epoch(cfg: ExperimentConfig, n_labeled: int, n_unlabeled: int) -> int:
    """Steps of one burn-in epoch (see the module docstring)."""
    if counts_unlabeled(cfg, n_unlabeled):
        return ssl_steps_per_epoch(cfg, n_unlabeled)
    return steps_per_epoch(n_labeled, cfg.train.batch_size, cfg.train.max_steps_per_epoch)


def supervised_epochs(cfg: ExperimentConfig) -> int:
    """Epochs of `medref burnin`: the burn-in, or with train.step_matched the whole semi-supervised
    run's length (burn-in + SSL epochs), so that the supervised control takes as many steps."""
    return cfg.train.burnin_epochs + (cfg.train.epochs if cfg.train.step_matched else 0)


def epoch_plan(cfg: ExperimentConfig, n_labeled: int, n_unlabeled: int, epochs: int, phase: str) -> list[int]:
    """Steps of each epoch of a supervised loop: burn-in epochs, then (the step-matched control,
    phase "supervised") epochs as long as the SSL epochs it stands in for."""
    burnin = burnin_steps_per_epoch(cfg, n_labeled, n_unlabeled)
    ssl = ssl_steps_per_epoch(cfg, n_unlabeled) if n_unlabeled else burnin
    return [ssl if phase == "supervised" and e >= cfg.train.burnin_epochs else burnin for e in range(epochs)]


def labeled_epoch(cfg: ExperimentConfig, n_labeled: int, n_unlabeled: int, per_epoch: int,
                  generator: torch.Generator, ssl_like: bool = False) -> list[torch.Tensor]:
    """The labeled batches of one burn-in epoch (`ssl_like`: of an epoch standing in for an SSL one)."""
    if not (counts_unlabeled(cfg, n_unlabeled) or (ssl_like and n_unlabeled > 0)):
        return distributed.trim_batches(epoch_batches(n_labeled, cfg.train.batch_size, generator))[:per_epoch]
    if cfg.train.labeled_draw == "replacement":
        return [torch.randint(n_labeled, (cfg.train.batch_size,), generator=generator) for _ in range(per_epoch)]
    rows = per_epoch * cfg.train.batch_size
    order = torch.cat([torch.randperm(n_labeled, generator=generator)
                       for _ in range(math.ceil(rows / n_labeled))])[:rows]
    return list(order.split(cfg.train.batch_size))


class ReplacementBatches:
    """Endless labeled batches drawn with replacement (the state is the generator's, saved with it)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __iter__(self) -> ReplacementBatches:
        return self

    def __next__(self) -> torch.Tensor:
        return torch.randint(self.n, (self.batch_size,), generator=self.generator)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None


def schedule_ticks(cfg: ExperimentConfig, phase: str, burnin_per_epoch: int, ssl_per_epoch: int) -> int:
    """T_max of the cosine, in scheduler ticks (epochs with lr_step epoch, else steps), for the
    schedule that `phase` (burnin | ssl | supervised) builds."""
    t = cfg.train
    per_epoch = ssl_per_epoch if phase == "ssl" else burnin_per_epoch
    if t.lr_period_epochs > 0:
        epochs_ticks = t.lr_period_epochs
        return epochs_ticks if t.lr_step == "epoch" else epochs_ticks * per_epoch
    if phase == "supervised":
        if t.lr_step == "epoch":
            return max(1, supervised_epochs(cfg))
        return max(1, t.burnin_epochs * burnin_per_epoch + (t.epochs * ssl_per_epoch if t.step_matched else 0))
    if t.optimizer_scope == "run":
        if t.lr_step == "epoch":
            return max(1, t.burnin_epochs + t.epochs)
        return max(1, t.burnin_epochs * burnin_per_epoch + t.epochs * ssl_per_epoch)
    epochs = t.burnin_epochs if phase == "burnin" else t.epochs
    return max(1, epochs if t.lr_step == "epoch" else epochs * per_epoch)


def build_schedule(optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, ticks: int
                   ) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, ticks), eta_min=cfg.train.min_lr)


def steps_lr_every_step(cfg: ExperimentConfig) -> bool:
    return cfg.train.lr_step == "step"


def ramp_epochs_in(cfg: ExperimentConfig, step: int, per_epoch: int) -> float:
    """Progress of the lambda_u ramp and the EMA warm-up: whole SSL epochs done (ramp_every epoch,
    the reference: constant within an epoch, 0 through the first SSL epoch) or the fraction."""
    if cfg.ssl.ramp_every == "epoch":
        return float(step // per_epoch)
    return step / per_epoch


@dataclass
class Handoff:
    """What the SSL phase continues from when burn-in and SSL are one run (train.optimizer_scope run)."""

    last_model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    teacher: dict[str, torch.Tensor] | None
    keeper: dict[str, Any]  # BestKeeper state (best score, epoch, patience counters; no weights)
    epochs_run: int
    steps: int

    def state_dict(self) -> dict[str, Any]:
        return {"last_model": self.last_model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "teacher": self.teacher, "keeper": self.keeper, "epochs_run": self.epochs_run, "steps": self.steps}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Handoff | None:
        if not state:
            return None
        return cls(state["last_model"], state["optimizer"], state["scheduler"], state["teacher"], state["keeper"],
                   int(state["epochs_run"]), int(state["steps"]))
