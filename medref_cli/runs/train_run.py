"""`medref train`: split (if needed) -> burn-in (reused when already in the ledger) -> SSL phase.

The burn-in depends only on the supervised part of the config, so it is recorded with the SSL
settings reset to their defaults (`burnin_config`): every ablation row of one backbone, ratio,
seed and data set shares one burn-in run. A finished burn-in with the same config hash, split
hash, data hash and code version is reused (its checkpoint verified against its sha256)
instead of being trained again; one whose checkpoint file is gone (a ledger restored on another
machine) is passed over, and the burn-in is trained again. The SSL run is recorded as a child of that burn-in run.
`resume_train` continues a killed, lost or failed SSL run from its resume checkpoint (or from its
burn-in when it died before the first one), as the same ledger run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

from medref_cli.config import ExperimentConfig, config_hash
from medref_cli.errors import MedrefError
from medref_cli.ledger import RunRecorder, finished_runs, open_ledger
from medref_cli.ledger.provenance import code_version
from medref_cli.runs.burnin_run import (
    Sinks,
    TrainOutcome,
    burnin_config,
    burnin_with_fit,
    finish_run,
    main_rank_reopen,
    main_rank_run,
    resume_inputs,
)
from medref_cli.runs.resume_run import (
    check_results_room,
    load_resume_source,
)
from medref_cli.runs.setup import RunInputs, prepare
from medref_cli.runtime import distributed
from medref_cli.runtime.build import build_model
from medref_cli.runtime.checkpoint import load_checkpoint
from medref_cli.training.phases import Handoff
from medref_cli.training.ssl_loop import fit_ssl


def find_burnin(ledger_url: str, cfg: ExperimentConfig, split_hash: str, data_hash: str):
    """(run id, (checkpoint, sha256)) of the newest finished burn-in of this experiment whose
    checkpoint file is still there, else None (the caller trains it)."""
    from medref_cli.evaluation.evaluate_run import checkpoint_of_run

    ledger = open_ledger(ledger_url)
    try:
        runs = finished_runs(ledger, "burnin", config_hash(burnin_config(cfg)), split_hash, data_hash,
                             code_version().label)
        gone = []
        for run in runs:
            path, sha = checkpoint_of_run(ledger, run.id)
            if path.is_file():
                return run.id, (path, sha)
            gone.append(f"run {run.id} ({path})")
        if gone:
            sys.stderr.write(f"the recorded burn-in's checkpoint is gone ({', '.join(gone)}); "
                             "training the burn-in again\n")
        return None
    finally:
        ledger.dispose()


def burnin_checkpoint(ledger_url: str, burnin_id: int) -> tuple[Path, str]:
    """The checkpoint file of a recorded burn-in run and its sha256 (read on rank 0, given to all)."""
    from medref_cli.evaluation.evaluate_run import checkpoint_of_run

    def read() -> tuple[Path, str]:
        ledger = open_ledger(ledger_url)
        try:
            return checkpoint_of_run(ledger, burnin_id)
        finally:
            ledger.dispose()

    return distributed.from_main(read)


def burnin_weights(ledger_url: str, burnin_id: int) -> dict:
    """The model state of a recorded burn-in run's checkpoint (sha256 verified)."""
    path, sha = burnin_checkpoint(ledger_url, burnin_id)
    return load_checkpoint(path, sha)["model"]


def start_from(cfg: ExperimentConfig, student: nn.Module, state: dict) -> tuple[Handoff | None, dict]:
    """Load the SSL phase's start weights from a burn-in checkpoint state: the last burn-in weights
    when the phases are one run (train.optimizer_scope run), else the best. Returns the hand-off
    and the burn-in's best weights."""
    handoff = Handoff.from_state(state.get("handoff"))
    if handoff is not None and cfg.train.optimizer_scope == "run":
        student.load_state_dict(handoff.last_model)
    else:
        student.load_state_dict(state["model"])
    return handoff, state["model"]


def _fit_and_finish(run: RunRecorder | None, inputs: RunInputs, student: nn.Module,
                    resume: dict | None, handoff: Handoff | None = None,
                    burnin_best: dict | None = None) -> TrainOutcome | None:
    cfg, t = inputs.cfg, inputs.tensors
    sinks = Sinks.of(run, cfg, "train")
    fit, winner = fit_ssl(student, t.labeled, t.unlabeled, t.valid, inputs.text_cache, cfg, sinks.log,
                          sinks.progress, checkpoints=sinks.checkpoints, resume=resume, handoff=handoff,
                          burnin_best=burnin_best)
    if run is None:  # a rank other than 0
        return None
    # both models' weights at the selected validation: `medref evaluate --weights student|teacher`
    outcome = finish_run(run, inputs, student, fit, "train", {"selected": winner, "student_teacher": fit.weights})
    run.merge_tags(selected=winner)
    if fit.teacher_checks:
        run.merge_tags(teacher_identical_checks=fit.teacher_checks)
    return outcome


def train_summary(burnin_id: int, reused: bool, outcome: TrainOutcome) -> dict:
    """What `medref train` prints (as JSON with --json)."""
    return {"run_id": outcome.run_id, "burnin_run_id": burnin_id, "burnin_reused": reused,
            "checkpoint": str(outcome.checkpoint), "best_epoch": outcome.fit.best_epoch,
            "val_dice_best": outcome.fit.best_val_dice, **outcome.test.prefixed("test")}


def run_train(cfg: ExperimentConfig, ledger_url: str) -> tuple[int, bool, TrainOutcome | None]:
    """Returns (burn-in run id, whether it was reused, the SSL outcome; None on ranks other than 0)."""
    if cfg.train.epochs < 1:
        raise MedrefError("train.epochs must be >= 1 for the semi-supervised phase")
    inputs = prepare(cfg, ledger_url, need_unlabeled=True)

    def lookup():
        facts = inputs.split.ledger_facts()
        return find_burnin(ledger_url, cfg, facts["split_hash"], facts["data_hash"])

    found = distributed.from_main(lookup)
    student = build_model(cfg, inputs.encoder.dim, inputs.device)
    check_results_room(cfg, student)
    if found is not None:
        burnin_id, (path, sha) = found
        reused = True
    else:
        outcome, _ = burnin_with_fit(cfg, ledger_url, inputs)
        burnin_id = distributed.from_main(lambda: outcome.run_id)
        path, sha = burnin_checkpoint(ledger_url, burnin_id)
        reused = False
    # every rank reads the same file: the hand-off (optimiser, teacher) must be equal on all of them
    handoff, best = start_from(cfg, student, load_checkpoint(path, sha))
    with main_rank_run(ledger_url, "train", cfg, inputs, parent_id=burnin_id) as run:
        if run is not None:
            run.merge_tags(burnin_reused=reused)
        return burnin_id, reused, _fit_and_finish(run, inputs, student, None, handoff, best)


def resume_train(ledger_url: str, run_id: int, given: ExperimentConfig,
                 keys: set[str]) -> tuple[int, bool, TrainOutcome | None]:
    """Continue a killed, lost or failed SSL run as the same ledger run. Returns what `run_train` does."""
    source = load_resume_source(ledger_url, run_id, "train", given, keys, lambda c: c)
    inputs = resume_inputs(source, ledger_url, need_unlabeled=True)
    student = build_model(source.cfg, inputs.encoder.dim, inputs.device)
    check_results_room(source.cfg, student)
    burnin_id = source.run.parent_id
    handoff, best = None, None
    if source.state is None:  # died before its first resume checkpoint: restart from the burn-in
        if burnin_id is None:
            raise MedrefError(f"train run {run_id} records no burn-in run to start from")
        handoff, best = start_from(source.cfg, student, load_checkpoint(*burnin_checkpoint(ledger_url, burnin_id)))
    reused = bool((source.run.tags or {}).get("burnin_reused", False))
    with main_rank_reopen(ledger_url, source, "train") as run:
        return burnin_id, reused, _fit_and_finish(run, inputs, student, source.state, handoff, best)
