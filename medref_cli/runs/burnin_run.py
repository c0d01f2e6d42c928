"""`medref burnin`: supervised training on the labeled split, recorded in the ledger.

With ratio 1.0 this is the fully supervised baseline of Table 1; with train.step_matched it is the
supervised control, as many optimizer steps as the semi-supervised run of the same config
(`phases.supervised_epochs`). The best checkpoint (by
validation Dice) is saved atomically with its sha256, and the test split is evaluated with it:
global and per-image Dice/IoU as final metrics, per-image scores for paired tests. The resume
checkpoint `last.pt` is kept up to date while it trains; `resume_burnin` continues a killed,
lost or failed burn-in run from it, as the same ledger run.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from medref_cli.config import ExperimentConfig, SSLConfig, to_dict
from medref_cli.evaluation.evaluate import EvalResult, evaluate_split
from medref_cli.ledger import Ledger, RunRecorder, open_ledger, record_run, reopen_run
from medref_cli.runs.progress import Progress
from medref_cli.runs.resume import ResumeWriter
from medref_cli.runs.resume_run import (
    ResumeSource,
    check_results_room,
    check_same_data,
    load_resume_source,
    resume_writer,
    run_dir,
)
from medref_cli.runs.setup import RunInputs, prepare
from medref_cli.runtime import distributed
from medref_cli.runtime.build import build_model
from medref_cli.runtime.checkpoint import save_checkpoint
from medref_cli.training.metric_window import MetricSink
from medref_cli.training.phases import epoch_plan, supervised_epochs
from medref_cli.training.supervised import FitResult, fit_supervised

CHECKPOINT_FORMAT = 1


@dataclass
class TrainOutcome:
    run_id: int
    checkpoint: Path
    fit: FitResult
    test: EvalResult


BURNIN_SSL_KEYS = ("zoom_min", "zoom_max", "zoom_prob", "zoom_mode", "shift", "ema", "ema_in_burnin", "ema_momentum_start", "ema_momentum",
                   "ema_warmup_epochs")
# what labeled ITCL during burn-in reads
ITCL_SSL_KEYS = ("contrastive", "itcl_tau", "itcl_empty_match", "lambda_itcl_sup")


def burnin_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config a burn-in run records: the SSL-only settings back at their defaults.

    The burn-in computes the same thing whatever the SSL phase will do, so every ablation row of
    one backbone, ratio, seed and data set shares (and reuses) one burn-in run. It keeps what it
    reads: the weak view, the EMA teacher it tracks, the ITCL settings when train.burnin_itcl is
    on, and the train section (the SSL length sets a run-long LR schedule). Never step-matched.
    """
    keep = BURNIN_SSL_KEYS + (ITCL_SSL_KEYS if cfg.train.burnin_itcl else ())
    ssl = dataclasses.replace(SSLConfig(), **{k: getattr(cfg.ssl, k) for k in keep})
    train = dataclasses.replace(cfg.train, step_matched=False)
    return dataclasses.replace(cfg, ssl=ssl, train=train)


def supervised_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config `medref burnin` records: the burn-in's, or (train.step_matched) the step-matched
    supervised control's, which keeps no EMA teacher."""
    if not cfg.train.step_matched:
        return burnin_config(cfg)
    base = burnin_config(cfg)
    return dataclasses.replace(base, train=dataclasses.replace(base.train, step_matched=True))


def checkpoint_state(kind: str, cfg: ExperimentConfig, model: nn.Module, text_dim: int, fit: FitResult,
                     extra: dict | None = None) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "config": to_dict(cfg),
        "text_dim": text_dim,
        "model": model.state_dict(),
        "best_epoch": fit.best_epoch,
        "best_val_dice": fit.best_val_dice,
        **(extra or {}),
    }


def finish_run(run: RunRecorder, inputs: RunInputs, model: nn.Module, fit: FitResult, kind: str,
               extra_state: dict | None = None) -> TrainOutcome:
    """Save the best checkpoint, evaluate the test split with it, record everything."""
    cfg = inputs.cfg
    path = run_dir(cfg, run.id) / "best.pt"
    extra_state = {"weights": inputs.weights, **(extra_state or {})}
    digest = save_checkpoint(path, checkpoint_state(kind, cfg, model, inputs.encoder.dim, fit, extra_state))
    run.add_artifact(path, role="checkpoint", sha256=digest)
    test = evaluate_split(model, inputs.tensors.test, inputs.text_cache, cfg.eval.threshold, cfg.train.batch_size,
                          cfg.runtime.amp, cfg.runtime.channels_last)
    run.add_image_scores("test", test.ids, test.dice, test.iou)
    finals = test.prefixed("test")
    finals.update({"val_dice_best": fit.best_val_dice, "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run,
                   "steps": fit.steps})
    run.set_final(finals)
    return TrainOutcome(run.id, path, fit, test)


@contextlib.contextmanager
def on_main_rank(ledger_url: str, open_run: Callable[[Ledger], ContextManager[RunRecorder]]
                 ) -> Iterator[RunRecorder | None]:
    """The ledger run `open_run` records or reopens, on rank 0; None on the other ranks of a
    multi-process run, which never touch the ledger (they train in step with rank 0)."""
    if not distributed.current().is_main:
        yield None
        return
    ledger = open_ledger(ledger_url)
    try:
        with open_run(ledger) as run:
            if distributed.current().active:
                run.merge_tags(world_size=distributed.current().world)
            yield run
    finally:
        ledger.dispose()


def main_rank_run(ledger_url: str, kind: str, cfg: ExperimentConfig, inputs: RunInputs,
                  **facts) -> ContextManager[RunRecorder | None]:
    """A new ledger run (`record_run`) on rank 0, None elsewhere."""
    return on_main_rank(ledger_url, lambda ledger: record_run(ledger, kind, cfg, **inputs.split.ledger_facts(),
                                                              weights=inputs.weights, **facts))


def main_rank_reopen(ledger_url: str, source: ResumeSource, kind: str) -> ContextManager[RunRecorder | None]:
    """The resumed ledger run (`reopen_run`) on rank 0, None elsewhere."""
    return on_main_rank(ledger_url, lambda ledger: reopen_run(ledger, source.run.id, kind,
                                                              source.cfg.runtime.heartbeat_s, source.keep_step,
                                                              source.note()))


def resume_inputs(source: ResumeSource, ledger_url: str, need_unlabeled: bool = False) -> RunInputs:
    """Data, split and text encoder of a run to resume, checked to be what the run trained on (with
    a global batch that splits over the processes)."""
    dist = distributed.current()
    if dist.active:
        distributed.check_global_batch(source.cfg, dist.world)
    inputs = prepare(source.cfg, ledger_url, need_unlabeled=need_unlabeled)
    distributed.main_check(lambda: check_same_data(source.run, inputs))
    return inputs


@dataclass
class Sinks:
    """Where a training loop reports: the ledger run, the terminal, the resume checkpoint."""

    log: MetricSink
    progress: Progress
    checkpoints: ResumeWriter | None

    @classmethod
    def of(cls, run: RunRecorder | None, cfg: ExperimentConfig, phase: str) -> Sinks:
        if run is None:  # a rank other than 0
            return cls(lambda values, step: None, Progress(False), None)
        return cls(run.log_metrics, Progress(cfg.runtime.progress), resume_writer(run, cfg, phase))


def burnin_summary(outcome: TrainOutcome) -> dict:
    """What `medref burnin` prints (as JSON with --json)."""
    return {"run_id": outcome.run_id, "checkpoint": str(outcome.checkpoint), "best_epoch": outcome.fit.best_epoch,
            "val_dice_best": outcome.fit.best_val_dice, **outcome.test.prefixed("test")}


def _fit(run: RunRecorder | None, inputs: RunInputs, model: nn.Module, resume: dict | None) -> FitResult:
    cfg = inputs.cfg
    sinks = Sinks.of(run, cfg, "burnin")
    return fit_supervised(model, inputs.tensors.labeled, inputs.tensors.valid, inputs.text_cache, cfg,
                          supervised_epochs(cfg), sinks.log, sinks.progress, checkpoints=sinks.checkpoints,
                          resume=resume, n_unlabeled=inputs.n_unlabeled,
                          phase="supervised" if cfg.train.step_matched else "burnin")


def _finish(run: RunRecorder, inputs: RunInputs, model: nn.Module, fit: FitResult) -> TrainOutcome:
    """Record a burn-in (with the hand-off its SSL phase continues from) or a supervised control."""
    if inputs.cfg.train.step_matched:
        run.merge_tags(step_matched=True, planned_steps=planned_supervised_steps(inputs))
        return finish_run(run, inputs, model, fit, "burnin")
    extra = {"handoff": fit.handoff.state_dict()} if fit.handoff is not None else None
    return finish_run(run, inputs, model, fit, "burnin", extra)


def planned_supervised_steps(inputs: RunInputs) -> int:
    cfg = inputs.cfg
    phase = "supervised" if cfg.train.step_matched else "burnin"
    return sum(epoch_plan(cfg, len(inputs.tensors.labeled), inputs.n_unlabeled, supervised_epochs(cfg), phase))


def run_burnin(cfg: ExperimentConfig, ledger_url: str, inputs: RunInputs | None = None) -> TrainOutcome | None:
    """Train and record a burn-in run. `inputs` (prepared for the same data and split) avoids loading
    twice. None on the ranks other than 0 of a multi-process run."""
    return burnin_with_fit(cfg, ledger_url, inputs)[0]


def burnin_with_fit(cfg: ExperimentConfig, ledger_url: str, inputs: RunInputs | None = None
                    ) -> tuple[TrainOutcome | None, FitResult]:
    """`run_burnin`, with the fit itself (on every rank: its hand-off is what SSL continues from)."""
    cfg = supervised_config(cfg)
    inputs = prepare(cfg, ledger_url) if inputs is None else dataclasses.replace(inputs, cfg=cfg)
    model = build_model(cfg, inputs.encoder.dim, inputs.device)
    check_results_room(cfg, model)
    with main_rank_run(ledger_url, "burnin", cfg, inputs) as run:
        fit = _fit(run, inputs, model, None)
        return (None if run is None else _finish(run, inputs, model, fit)), fit


def resume_burnin(ledger_url: str, run_id: int, given: ExperimentConfig, keys: set[str]) -> TrainOutcome | None:
    """Continue a killed, lost or failed burn-in run as the same ledger run (config as recorded;
    `keys` are the options the user gave, refused where they conflict with the record)."""
    source = load_resume_source(ledger_url, run_id, "burnin", given, keys, supervised_config)
    inputs = resume_inputs(source, ledger_url)
    model = build_model(source.cfg, inputs.encoder.dim, inputs.device)
    check_results_room(source.cfg, model)
    with main_rank_reopen(ledger_url, source, "burnin") as run:
        fit = _fit(run, inputs, model, source.state)
        return None if run is None else _finish(run, inputs, model, fit)
