"""A tiny Table 2 grid on each ledger backend (SQLite, and PostgreSQL when a server is up): every
cell finishes exactly once, and the same command run again runs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from medref_cli.ledger import open_ledger
from medref_cli.ledger.schema import Run

from .tiny import TINY, _data

PROJECT = Path(__file__).resolve().parents[2]
GRID = PROJECT / "experiments" / "ablations"


def _ablate_out(args: list[str], cwd: Path, url: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MEDREF_LEDGER": url, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "medref_cli", "ablate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _ablate(args: list[str], cwd: Path, url: str) -> dict:
    return json.loads(_ablate_out(args, cwd, url).strip().splitlines()[-1])


def _cells(url: str) -> list[Run]:
    ledger = open_ledger(url, create=False)
    try:
        with ledger.read() as s:
            return list(s.scalars(select(Run).where(Run.kind.in_(("burnin", "train")))))
    finally:
        ledger.dispose()


@pytest.mark.slow
def test_a_grid_runs_every_cell_once_and_a_rerun_runs_nothing(ledger_backend, tmp_path, synthetic_root):
    args = ["--table", "2", "--ratio", "0.5", "--seeds", "0", "--jobs", "2", "--grid-dir", str(GRID),
            *_data(synthetic_root), *[a for a in TINY if a != "--cpu"], "--set", "runtime.device=cpu",
            "--set", "train.burnin_epochs=1", "--set", "train.epochs=1", "--json"]
    first = _ablate(args, tmp_path, ledger_backend)
    # 1 ratio x 1 seed: the shared burn-in, the Baseline's step-matched control, 4 semi-supervised rows
    assert first["cells"] == 6 and first["skipped"] == 0
    assert sorted(first["outcomes"].values()) == ["finished"] * 6
    runs = _cells(ledger_backend)
    assert {r.status for r in runs} == {"finished"}
    per_cell = Counter((r.kind, r.config_hash, r.split_hash) for r in runs)
    assert len(per_cell) == 6 and set(per_cell.values()) == {1}, "every cell trained exactly once"

    again = _ablate(args, tmp_path, ledger_backend)
    assert again["skipped"] == 6 and again["outcomes"] == {}
    if ledger_backend.startswith("sqlite:///"):  # a query in the URL names the same file
        assert _ablate(args, tmp_path, ledger_backend + "?timeout=30")["skipped"] == 6
    assert len(_cells(ledger_backend)) == len(runs), "the rerun trained nothing"

    # the ledger moved to a machine without the run files (scripts/ledger_snapshot.py restore):
    # with every cell done, nothing is trained again
    burnin = next(r for r in runs if r.kind == "burnin" and not r.config["train"]["step_matched"])
    for f in (tmp_path / "results" / "runs" / str(burnin.id)).iterdir():
        f.unlink()
    assert _ablate(args, tmp_path, ledger_backend)["skipped"] == 6
    # one semi-supervised cell has to run again: its burn-in is trained again first, as a new run
    ours = next(r for r in runs if r.kind == "train" and r.name == "t2-itcl")
    ledger = open_ledger(ledger_backend, create=False)
    try:
        with ledger.write() as s:
            s.get(Run, ours.id).status = "failed"
    finally:
        ledger.dispose()
    shown = _ablate_out([a for a in args if a != "--json"] + ["--dry-run"], tmp_path, ledger_backend)
    states = {line.split("│")[1].strip(): line.split("│")[5].strip() for line in shown.splitlines()
              if line.startswith("│")}
    assert states["(burn-in)"] == "no-files" and states["+ ITCL (Ours)"] == "failed", shown
    assert states["+ PosAug"] == "done"
    third = _ablate(args, tmp_path, ledger_backend)
    assert third["skipped"] == 4 and sorted(third["outcomes"].values()) == ["finished"] * 2
    after = _cells(ledger_backend)
    new = {r.id: r for r in after if r.id not in {old.id for old in runs}}
    assert sorted(r.kind for r in new.values()) == ["burnin", "train"]
    new_burnin = next(r for r in new.values() if r.kind == "burnin")
    assert new_burnin.config_hash == burnin.config_hash and new_burnin.status == "finished"
    assert next(r for r in new.values() if r.kind == "train").parent_id == new_burnin.id
