"""Arguments and ledger reads shared by the tests that run tiny `medref` pipelines."""

from __future__ import annotations

import sqlite3
from pathlib import Path

TINY = [
    "--backbone", "mmi-unet-tiny", "--cpu",
    "--set", "data.image_size=64",
    "--set", "model.visual_pretrained=false",
    "--set", "model.text_encoder=tiny-random-bert",
    "--set", "train.batch_size=4",
    "--set", "train.max_steps_per_epoch=2",
    "--set", "runtime.progress=false",
    "--set", "runtime.log_every=1",
]


def _data(root: Path) -> list[str]:
    return ["--dataset", "synthetic", "--data", str(root)]


def _rows(tmp_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(tmp_path / "results" / "ledger.db") as conn:
        return conn.execute(sql).fetchall()
