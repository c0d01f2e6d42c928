"""Ledger soak: `medref ablate --jobs 4` writes while `medref runs` and `medref report` read, on one ledger.

Once on SQLite and once on PostgreSQL: the local server `make test` starts (scripts/ci/postgres.sh),
or the one MEDREF_TEST_POSTGRES_URL names (see README, "PostgreSQL"); skipped without a server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from medref_cli.ledger import open_ledger
from medref_cli.ledger.schema import FinalMetric, MetricPoint, Run

PROJECT = Path(__file__).resolve().parents[1]
TINY = [
    "--backbone", "mmi-unet-tiny",
    "--set", "data.image_size=64", "--set", "data.synthetic_n=40",
    "--set", "model.visual_pretrained=false", "--set", "model.text_encoder=tiny-random-bert",
    "--set", "train.batch_size=4", "--set", "train.max_steps_per_epoch=2",
    "--set", "train.burnin_epochs=1", "--set", "train.epochs=1",
    "--set", "runtime.device=cpu", "--set", "runtime.progress=false", "--set", "runtime.log_every=1",
    "--set", "runtime.results_dir=results",
]


def _medref(*args: str, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "medref_cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_ablate_jobs_4_with_concurrent_readers(tmp_path, ledger_backend):
    url = ledger_backend
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MEDREF_LEDGER": url}
    grid = ["ablate", "--table", "2", "--seeds", "0", "--jobs", "4", "--grid-dir",
            str(PROJECT / "experiments" / "ablations"), "--json", *TINY]
    writer = _medref(*grid, cwd=tmp_path, env=env)
    reads, reader_errors = 0, []
    while writer.poll() is None:
        for args in (["runs", "--json"], ["report", "--table", "2", "--format", "json"]):
            reader = _medref(*args, cwd=tmp_path, env=env)
            out, err = reader.communicate(timeout=300)
            reads += 1
            # before the first run is recorded the ledger may not exist yet: that is the only allowed error
            if reader.returncode != 0 and "no ledger" not in err:
                reader_errors.append(err.strip())
            if "locked" in err:
                reader_errors.append(err.strip())
        time.sleep(0.5)
    out, err = writer.communicate()
    assert writer.returncode == 0, err[-2000:]
    assert "locked" not in err
    assert reader_errors == []
    assert reads >= 2
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary["outcomes"].values()) == {"finished"}

    ledger = open_ledger(url, create=False)
    try:
        with ledger.read() as s:
            runs = list(s.scalars(select(Run).order_by(Run.id)))
            steps = {(rid, name): sorted(v for (v,) in s.execute(
                select(MetricPoint.step).where(MetricPoint.run_id == rid, MetricPoint.name == name)))
                for rid, name in s.execute(select(MetricPoint.run_id, MetricPoint.name).distinct())}
            finals = {(f.run_id, f.name): f.value for f in s.scalars(select(FinalMetric))}
    finally:
        ledger.dispose()
    assert {r.status for r in runs} == {"finished"}
    cells = [r for r in runs if r.kind in ("burnin", "train")]
    # 2 ratios x (1 shared burn-in + the Baseline's step-matched supervised control + 4 semi-supervised rows)
    burnins = [r for r in cells if r.kind == "burnin"]
    assert len(burnins) == 4 and sum(r.kind == "train" for r in cells) == 8
    assert sorted(bool(r.config["train"]["step_matched"]) for r in burnins) == [False, False, True, True]
    for run in cells:
        # log_every=1: one loss point per optimizer step, none lost, none doubled
        name = "train_loss" if run.kind == "burnin" else "loss"
        n_steps = int(finals[(run.id, "steps")])
        assert steps[(run.id, name)] == list(range(1, n_steps + 1)), (run.id, run.kind)
    ablate = [r for r in runs if r.kind == "ablate"]
    assert len(ablate) == 1
    assert steps[(ablate[0].id, "cells_ended")] == list(range(1, len(summary["outcomes"]) + 1))
