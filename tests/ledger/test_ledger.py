from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from medref_cli.config import load_config
from medref_cli.errors import MedrefError
from medref_cli.ledger import (
    RunFilter,
    diff_runs,
    finished_runs,
    list_runs,
    open_ledger,
    record_run,
    run_detail,
)
from medref_cli.ledger.db import migrate, schema_version
from medref_cli.ledger.schema import SCHEMA_VERSION, MetricPoint

WORKER = Path(__file__).with_name("ledger_worker.py")
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def ledger(url):
    led = open_ledger(url)
    yield led
    led.dispose()


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_sqlite_is_in_wal_mode_with_a_busy_timeout(ledger):
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
        assert schema_version(conn) == SCHEMA_VERSION


def test_a_finished_run_records_its_provenance(ledger, tmp_path):
    cfg = load_config(sets=["train.seed=7"])
    artifact = tmp_path / "a.bin"
    artifact.write_bytes(b"medref")
    with record_run(ledger, "burnin", cfg, dataset="synthetic", data_hash="d" * 64, split_hash="s" * 64) as run:
        run.log_metrics({"loss": 0.5, "dice": 0.25}, step=3)
        sha = run.add_artifact(artifact, role="checkpoint")
        run.set_final({"dice_global": 0.8})
        run.set_final({"dice_global": 0.9})
    d = run_detail(ledger, run.id, history_points=5)
    assert d["status"] == "finished" and d["ended"] is not None and d["error"] is None
    assert d["finals"] == {"dice_global": 0.9}
    assert d["history"]["loss"][0][:2] == [3, 0.5]
    import hashlib

    assert sha == hashlib.sha256(b"medref").hexdigest()
    assert d["artifacts"][0]["sha256"] == hashlib.sha256(b"medref").hexdigest()
    assert d["artifacts"][0]["bytes"] == 6
    assert d["seed"] == 7 and d["config"]["train"]["seed"] == 7
    assert d["data"]["hash"] == "d" * 64 and d["data"]["split_hash"] == "s" * 64
    assert d["packages"]["torch"] and d["packages"]["python"]
    assert d["host"]["hostname"] and d["host"]["cpu_count"]
    assert d["code"]["version"]
    assert len(d["config_hash"]) == 64 and len(d["config_schema"]) == 64


def test_a_run_that_raises_is_failed_with_its_error(ledger):
    with pytest.raises(ZeroDivisionError), record_run(ledger, "train", load_config()) as run:
        1 / 0  # noqa: B018
    d = run_detail(ledger, run.id)
    assert d["status"] == "failed"
    assert d["error"].startswith("ZeroDivisionError")
    assert "1 / 0" in d["traceback"]


def test_keyboard_interrupt_marks_the_run_killed(ledger):
    with pytest.raises(KeyboardInterrupt), record_run(ledger, "train", load_config()) as run:
        raise KeyboardInterrupt
    assert run_detail(ledger, run.id)["status"] == "killed"


def test_a_run_sent_sigterm_is_killed(ledger, url):
    proc = _spawn("sleep", url)
    line = proc.stdout.readline()
    assert line.startswith("READY"), proc.stderr.read()
    run_id = int(line.split()[1])
    # live: its heartbeat (every 0.2 s) keeps it running; on a loaded machine one beat may come late
    deadline = time.monotonic() + 10
    while run_detail(ledger, run_id)["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_detail(ledger, run_id)["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    d = run_detail(ledger, run_id)
    assert d["status"] == "killed" and d["error"] == "killed by SIGTERM"


def test_a_run_whose_process_died_silently_is_shown_lost(ledger, url):
    proc = _spawn("sleep", url)
    run_id = int(proc.stdout.readline().split()[1])
    time.sleep(0.5)
    assert run_detail(ledger, run_id)["status"] == "running"  # heartbeat (0.2 s) keeps it alive
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(1.0)  # > 3 heartbeat intervals
    assert run_detail(ledger, run_id)["status"] == "lost"
    assert [r["id"] for r in list_runs(ledger, RunFilter(status="lost"))] == [run_id]
    assert list_runs(ledger, RunFilter(status="running")) == []


def test_eight_processes_write_metrics_at_once_without_losing_a_row(ledger, url):
    procs = [_spawn("metrics", url, "200") for _ in range(8)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0, err
        assert "locked" not in err
    with ledger.read() as s:
        assert s.scalar(select(func.count()).select_from(MetricPoint)) == 1600
        per_run = dict(s.execute(select(MetricPoint.run_id, func.count()).group_by(MetricPoint.run_id)).all())
    assert sorted(per_run.values()) == [200] * 8
    assert {r["status"] for r in list_runs(ledger)} == {"finished"}


def test_filters_diff_and_reuse_lookup(ledger):
    a = load_config(sets=["model.backbone=guidedecoder"])
    b = load_config(sets=["model.backbone=guidedecoder", "train.lr=0.001"])
    with record_run(ledger, "burnin", a, dataset="qata", data_hash="h", split_hash="s") as ra:
        pass
    with record_run(ledger, "burnin", b, dataset="synthetic", data_hash="h", split_hash="s") as rb:
        pass
    assert [r["id"] for r in list_runs(ledger, RunFilter(dataset="qata"))] == [ra.id]
    assert [r["id"] for r in list_runs(ledger, RunFilter(backbone="guidedecoder"))] == [ra.id, rb.id]
    assert list_runs(ledger, RunFilter(kind="train")) == []
    d = diff_runs(ledger, ra.id, rb.id)
    assert d["config"] == {"train.lr": [0.0003, 0.001]}
    assert d["facts"]["dataset"] == {"a": "qata", "b": "synthetic", "same": False}
    assert d["facts"]["code_version"]["same"] is True
    code = run_detail(ledger, ra.id)["code"]["version"]
    from medref_cli.config import config_hash

    assert [r.id for r in finished_runs(ledger, "burnin", config_hash(a), "s", "h", code)] == [ra.id]
    assert finished_runs(ledger, "burnin", config_hash(a), "other", "h", code) == []
    assert finished_runs(ledger, "burnin", config_hash(a), "s", "h", "another-version") == []


def test_the_migrator_upgrades_an_older_ledger_and_keeps_its_rows(ledger, url):
    with record_run(ledger, "split", load_config()) as run:
        pass

    def add_note_column(conn):
        conn.execute(text("ALTER TABLE runs ADD COLUMN note VARCHAR(64) DEFAULT 'migrated'"))

    assert migrate(ledger.engine, target=SCHEMA_VERSION + 1, steps={SCHEMA_VERSION + 1: add_note_column}) == (
        SCHEMA_VERSION + 1
    )
    with ledger.engine.connect() as conn:
        assert schema_version(conn) == SCHEMA_VERSION + 1
        assert conn.execute(text("SELECT note FROM runs WHERE id = :i"), {"i": run.id}).scalar() == "migrated"
    # now the ledger is newer than this medref: refused with one line
    with pytest.raises(MedrefError, match="newer than this medref"):
        open_ledger(url)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    bad = tmp_path / "ledger.db"
    bad.write_text("this is not sqlite\n" * 10)
    with pytest.raises(MedrefError, match="not a SQLite database"):
        open_ledger(f"sqlite:///{bad}")
    assert bad.read_text() == "this is not sqlite\n" * 10


    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.db"]  # no -wal or -shm beside it


# SQLite's SHARED lock on the database file: byte range SHARED_FIRST (PENDING_BYTE + 2), 510 bytes
_LOCK_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 0x40000002, 0)
    print("free")
except OSError:
    print("held")
"""


def _shared_lock_state(path: Path) -> str:
    out = subprocess.run([sys.executable, "-c", _LOCK_PROBE, str(path)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_opening_the_ledger_keeps_the_locks_this_process_holds_on_it(tmp_path, url):
    """A reader's SHARED lock is what stops another process from checkpointing and deleting the WAL
    under it. Opening the ledger again in the same process (a run's heartbeat thread is mid-read while
    the main thread looks up a burn-in) must not drop it: a plain open() and close() of the file would."""
    import sqlite3

    open_ledger(url).dispose()
    path = tmp_path / "ledger.db"
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM runs").fetchone()
        assert _shared_lock_state(path) == "held"  # the probe sees a read transaction's lock
        open_ledger(url).dispose()
        assert _shared_lock_state(path) == "held"
    finally:
        reader.close()
    assert _shared_lock_state(path) == "free"  # and it sees none once the reader is gone


def test_a_database_with_foreign_tables_is_refused(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(MedrefError, match="foreign tables"):
        open_ledger(f"sqlite:///{path}")


def test_runs_cli_lists_shows_and_diffs(cli, tmp_path):
    led = open_ledger(f"sqlite:///{tmp_path / 'results' / 'ledger.db'}")
    with record_run(led, "split", load_config(), dataset="synthetic") as r1:
        r1.set_final({"n_labeled": 5})
    with pytest.raises(RuntimeError), record_run(led, "train", load_config(sets=["train.lr=0.01"]),
                                                 dataset="synthetic"):
        raise RuntimeError("diverged")
    led.dispose()
    import json

    code, out, err = cli("runs", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["kind"], r["status"]) for r in rows] == [("split", "finished"), ("train", "failed")]
    code, out, _ = cli("runs", "--status", "failed", "--json")
    assert [r["kind"] for r in json.loads(out)] == ["train"]
    code, out, _ = cli("runs", "show", "2", "--json")
    assert json.loads(out)["error"] == "RuntimeError: diverged"
    code, out, _ = cli("runs", "diff", "1", "2", "--json")
    assert json.loads(out)["config"]["train.lr"] == [0.0003, 0.01]
    code, out, _ = cli("runs")
    assert code == 0 and "failed" in out and "split" in out
    code, out, err = cli("runs", "show", "99")
    assert code == 2 and "no run 99" in err and err.count("\n") == 1
    code, out, err = cli("runs", "--status", "weird")
    assert code == 2 and "unknown status" in err


def test_a_kill_signal_waits_for_the_end_of_a_deferred_block(tmp_path, monkeypatch):
    """SIGTERM inside `kill_signals_deferred` lets the block finish (a checkpoint is written whole and
    moved into place), then surfaces as RunKilled; the handlers in force before are back afterwards."""
    import os
    import signal

    from medref_cli.ledger.recorder import RunKilled, _kill_signals_raise, kill_signals_deferred
    from medref_cli.runtime.checkpoint import load_checkpoint, save_checkpoint

    before = signal.getsignal(signal.SIGTERM)
    reached_the_end = False
    with pytest.raises(RunKilled) as killed, kill_signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        reached_the_end = True
    assert reached_the_end and killed.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before

    import torch

    real_save = torch.save

    def save_then_signal(obj, fh):  # the signal lands in the middle of a checkpoint write
        os.kill(os.getpid(), signal.SIGTERM)
        real_save(obj, fh)

    monkeypatch.setattr(torch, "save", save_then_signal)
    # as inside a recorded run: SIGTERM raises RunKilled (without the deferral the write would be cut)
    with pytest.raises(RunKilled), _kill_signals_raise():
        save_checkpoint(tmp_path / "ckpt.pt", {"weights": torch.arange(5)})
    assert torch.equal(load_checkpoint(tmp_path / "ckpt.pt")["weights"], torch.arange(5))
