"""Zone probabilities of a recorded position predictor (`medref position train`) for any records.

    probs = predict_position_probs("12", records)  # (N, 6) float32, the records' order

`position_run` is the ledger id of a finished `position` run (as a string, as a command line
gives it); the ledger is `ledger_url`, else $MEDREF_LEDGER, else results/ledger.db, as for every
command. The checkpoint is checked against its recorded sha256; images are decoded at the run's
`data.image_size` and standardised as the segmentation model's input is. The bit order is the
label's (left upper, left middle, left lower, right upper, right middle, right lower), with left
and right in the convention of the data set the predictor was trained on (`data.laterality`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from medref_cli.data.records import SampleRecord
from medref_cli.errors import MedrefError
from medref_cli.ledger import Ledger, default_ledger_url, get_run, open_ledger
from medref_cli.runtime.position import POSITION_KIND

POSITION_EVAL_KIND = "position_eval"


def run_number(run: str | int) -> int:
    try:
        return int(str(run).strip())
    except ValueError:
        raise MedrefError(f"a run id is a number, got '{run}'") from None


def position_checkpoint(ledger: Ledger, run_id: int) -> tuple[Path, str]:
    """The checkpoint (path, sha256) of a finished position run; one line for anything else."""
    from medref_cli.ledger import run_detail

    run = get_run(ledger, run_id)
    if run.kind != POSITION_KIND:
        raise MedrefError(f"run {run_id} is a {run.kind} run, not a position predictor (`medref position train`)")
    if run.status != "finished":
        raise MedrefError(f"position run {run_id} is {run.status}, not finished")
    checkpoints = [a for a in run_detail(ledger, run_id)["artifacts"] if a["role"] == "checkpoint"]
    if not checkpoints:
        raise MedrefError(f"position run {run_id} recorded no checkpoint")
    return Path(checkpoints[-1]["path"]), checkpoints[-1]["sha256"]


def predict_position_probs(position_run: str, records: Sequence[SampleRecord], *, ledger_url: str | None = None,
                           device: str = "auto", batch_size: int | None = None) -> torch.Tensor:
    """(N, 6) float32 zone probabilities (on the CPU) of the position run for `records`, in their order."""
    from medref_cli.data.cache import load_split
    from medref_cli.runtime.build import tensor_cache_dir
    from medref_cli.runtime.device import resolve_device
    from medref_cli.runtime.position import load_position_model, predict_split

    run_id = run_number(position_run)
    records = list(records)
    ledger = open_ledger(default_ledger_url(ledger_url), create=False)
    try:
        path, sha = position_checkpoint(ledger, run_id)
    finally:
        ledger.dispose()
    dev = resolve_device(device)
    cfg, model, _ = load_position_model(path, sha, dev)
    if not records:
        return torch.zeros(0, 6)
    tensors = load_split(records, cfg.data.image_size, cache_dir=tensor_cache_dir(cfg)).to(dev)
    return predict_split(model, tensors, batch_size or cfg.position.batch_size, cfg.runtime.amp)
