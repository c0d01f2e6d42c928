"""`medref train`: split (if needed) -> burn-in (reused when already in the ledger) -> SSL phase.

The burn-in depends only on the supervised part of the config, so it is recorded with the SSL
settings reset to their defaults (`burnin_config`): every ablation row of one backbone, ratio,
seed and data set shares one burn-in run. A finished burn-in with the same config hash, split
hash, data hash and code version is reused (its checkpoint verified against its sha256)
instead of being trained again. The SSL run is recorded as a child of that burn-in run.
"""

from __future__ import annotations

import dataclasses

from medref_cli.config import ExperimentConfig, config_hash
from medref_cli.errors import MedrefError
from medref_cli.ledger import find_finished, open_ledger, record_run
from medref_cli.ledger.provenance import code_version
from medref_cli.training.burnin_run import TrainOutcome, burnin_config, finish_run, run_burnin
from medref_cli.training.checkpoint import load_checkpoint
from medref_cli.training.progress import Progress
from medref_cli.training.setup import build_model, prepare
from medref_cli.training.ssl_loop import fit_ssl


def find_burnin(ledger_url: str, cfg: ExperimentConfig, split_hash: str, data_hash: str):  # noqa: ANN201
    ledger = open_ledger(ledger_url)
    try:
        run = find_finished(ledger, "burnin", config_hash(burnin_config(cfg)), split_hash, data_hash,
                            code_version().label)
        if run is None:
            return None
        from medref_cli.evaluation.evaluate_run import checkpoint_of_run

        return run.id, checkpoint_of_run(ledger, run.id)
    finally:
        ledger.dispose()


def run_train(cfg: ExperimentConfig, ledger_url: str) -> tuple[int, bool, TrainOutcome]:
    """Returns (burn-in run id, whether it was reused, the SSL outcome)."""
    if cfg.train.epochs < 1:
        raise MedrefError("train.epochs must be >= 1 for the semi-supervised phase")
    inputs = prepare(cfg, ledger_url, need_unlabeled=True)
    facts = inputs.split.ledger_facts()
    found = find_burnin(ledger_url, cfg, facts["split_hash"], facts["data_hash"])
    student = build_model(cfg, inputs.encoder.dim, inputs.device)
    if found is not None:
        burnin_id, (path, sha) = found
        student.load_state_dict(load_checkpoint(path, sha)["model"])
        reused = True
    else:
        burnin_id = run_burnin(cfg, ledger_url, inputs).run_id
        from medref_cli.evaluation.evaluate_run import checkpoint_of_run

        ledger = open_ledger(ledger_url)
        try:
            path, sha = checkpoint_of_run(ledger, burnin_id)
        finally:
            ledger.dispose()
        student.load_state_dict(load_checkpoint(path, sha)["model"])
        reused = False
    ledger = open_ledger(ledger_url)
    try:
        with record_run(ledger, "train", cfg, parent_id=burnin_id, **facts) as run:
            run.update(tags={"burnin_reused": reused})
            t = inputs.tensors
            fit, winner = fit_ssl(student, t.labeled, t.unlabeled, t.valid, inputs.text_cache, cfg,
                                  run.log_metrics, Progress(cfg.runtime.progress))
            outcome = finish_run(run, inputs, student, fit, "train", {"selected": winner})
            run.update(tags={"burnin_reused": reused, "selected": winner})
            return burnin_id, reused, outcome
    finally:
        ledger.dispose()
