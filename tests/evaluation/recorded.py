"""A recorded run's model, loaded as `medref evaluate` and `medref predict` load it, with its text cache."""

from __future__ import annotations

import torch


def load_recorded(ledger_url: str, run_id: int):
    """(LoadedModel, TextFeatureCache) of run `run_id`'s checkpoint, on the CPU."""
    from medref_cli.evaluation.evaluate_run import checkpoint_of_run, load_model
    from medref_cli.ledger import open_ledger
    from medref_cli.runtime.build import build_text

    ledger = open_ledger(ledger_url, create=False)
    path, sha = checkpoint_of_run(ledger, run_id)
    ledger.dispose()
    loaded = load_model(path, sha, torch.device("cpu"), run_id)
    _, cache = build_text(loaded.cfg, torch.device("cpu"))
    return loaded, cache
