"""docs/results-cpu.md is rebuilt, byte for byte, from the ledger snapshot committed beside it
(docs/results-cpu.ledger.sql) by the arguments the document names in its last line."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "results-cpu.md"
SNAPSHOT = ROOT / "docs" / "results-cpu.ledger.sql"
MADE_BY = "<!-- made by: scripts/results_cpu.py --ledger LEDGER "


@pytest.mark.slow
def test_the_committed_results_document_is_what_its_ledger_gives(tmp_path):
    assert DOC.is_file() and SNAPSHOT.is_file(), "the results document and its ledger snapshot go together"
    text = DOC.read_text(encoding="utf-8")
    last = text.rstrip("\n").splitlines()[-1]
    assert last.startswith(MADE_BY) and last.endswith(" -->"), last
    args = shlex.split(last[len(MADE_BY):-len(" -->")])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    ledger = tmp_path / "ledger.db"
    restored = subprocess.run([sys.executable, str(ROOT / "scripts" / "ledger_snapshot.py"), "restore",
                               str(SNAPSHOT), str(ledger)], capture_output=True, text=True, env=env, check=False)
    assert restored.returncode == 0, restored.stderr
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_cpu.py"), "--ledger", f"sqlite:///{ledger}",
                           *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=900)
    assert made.returncode == 0, made.stderr
    assert made.stdout == text
