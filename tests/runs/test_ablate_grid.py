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


def _ablate(args: list[str], cwd: Path, url: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MEDREF_LEDGER": url}
    done = subprocess.run([sys.executable, "-m", "medref_cli", "ablate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    assert len(_cells(ledger_backend)) == len(runs), "the rerun trained nothing"
