"""scripts/ledger_snapshot.py: a ledger kept as a text file in the repository and rebuilt from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medref_cli.config import load_config
from medref_cli.ledger import list_runs, open_ledger, record_run, run_detail

PROJECT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT / "scripts" / "ledger_snapshot.py"


def _snapshot(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def recorded(tmp_path) -> Path:
    path = tmp_path / "ledger.db"
    led = open_ledger(f"sqlite:///{path}")
    try:
        with record_run(led, "burnin", load_config(sets=["train.seed=3"]), dataset="synthetic",
                        data_hash="d" * 64, split_hash="s" * 64) as run:
            run.log_metrics({"train_loss": 0.75, "val_dice_global": 0.5}, 4)
            run.add_image_scores("test", ["img-1", "img-2"], [0.25, 0.5], [0.125, 0.375])
            run.set_final({"test_dice_global": 0.625, "steps": 4.0})
        with record_run(led, "train", load_config(), parent_id=run.id, tags={"note": "it's quoted"}) as child:
            child.log_metrics({"train_loss": 0.5}, 1)
    finally:
        led.dispose()
    return path


def _everything(path: Path) -> list[dict]:
    led = open_ledger(f"sqlite:///{path}", create=False)
    try:
        return [run_detail(led, r["id"], history_points=100) for r in list_runs(led)]
    finally:
        led.dispose()


def test_a_restored_snapshot_holds_every_run_as_recorded_and_saves_to_the_same_bytes(recorded, tmp_path):
    snap = tmp_path / "ledger.sql"
    done = _snapshot("save", f"sqlite:///{recorded}", str(snap))
    assert done.returncode == 0, done.stderr
    restored = tmp_path / "again" / "ledger.db"
    done = _snapshot("restore", str(snap), str(restored))
    assert done.returncode == 0, done.stderr
    original = _everything(recorded)
    assert [r["kind"] for r in original] == ["burnin", "train"]
    assert _everything(restored) == original
    assert original[0]["finals"] == {"test_dice_global": 0.625, "steps": 4.0} and original[0]["image_scores"] == 2
    assert original[1]["tags"]["note"] == "it's quoted"
    again = tmp_path / "again.sql"
    assert _snapshot("save", f"sqlite:///{restored}", str(again)).returncode == 0
    assert again.read_bytes() == snap.read_bytes()
    assert sorted(p.name for p in restored.parent.iterdir()) == ["ledger.db"]


def test_restore_never_touches_an_existing_ledger(recorded, tmp_path):
    snap = tmp_path / "ledger.sql"
    assert _snapshot("save", f"sqlite:///{recorded}", str(snap)).returncode == 0
    target = tmp_path / "other.db"
    target.write_bytes(b"keep me")
    done = _snapshot("restore", str(snap), str(target))
    assert done.returncode == 2 and done.stderr == f"error: {target} already exists; restore a snapshot into a new ledger file\n"
    assert target.read_bytes() == b"keep me"


def test_a_file_that_is_not_a_snapshot_builds_nothing(tmp_path):
    bogus = tmp_path / "notes.sql"
    bogus.write_text("DROP TABLE runs;\n")
    target = tmp_path / "new" / "ledger.db"
    done = _snapshot("restore", str(bogus), str(target))
    assert done.returncode == 2 and "is not a ledger snapshot" in done.stderr and done.stderr.count("\n") == 1
    assert not target.exists()


def test_a_broken_snapshot_leaves_no_ledger_behind(recorded, tmp_path):
    snap = tmp_path / "ledger.sql"
    assert _snapshot("save", f"sqlite:///{recorded}", str(snap)).returncode == 0
    text = snap.read_text()
    cut = tmp_path / "cut.sql"
    cut.write_text(text[: text.index("INSERT INTO \"runs\"")] + "INSERT INTO \"runs\" VALUES(1,\n")
    target = tmp_path / "new" / "ledger.db"
    done = _snapshot("restore", str(cut), str(target))
    assert done.returncode == 2 and "does not build a ledger" in done.stderr and done.stderr.count("\n") == 1
    assert list(target.parent.iterdir()) == []


def test_only_a_sqlite_ledger_is_saved(tmp_path):
    out = tmp_path / "x.sql"
    done = _snapshot("save", "postgresql+psycopg://medref@localhost/medref", str(out))
    assert done.returncode == 2 and "a snapshot is taken of a SQLite ledger" in done.stderr
    assert "localhost" not in done.stderr and not out.exists()
    done = _snapshot("save", f"sqlite:///{tmp_path / 'missing.db'}", str(out))
    assert done.returncode == 2 and "no ledger at" in done.stderr and not out.exists()
