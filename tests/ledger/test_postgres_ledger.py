"""Processes that open one fresh PostgreSQL ledger at the same moment (a grid's cells, jobs on
several nodes) all get it: one of them creates it, the others wait and find it made."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

PROJECT = Path(__file__).resolve().parents[2]
OPENER = """
import sys, time
from medref_cli.ledger import open_ledger
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
open_ledger(sys.argv[2]).dispose()
"""


def test_eight_processes_create_one_fresh_ledger_at_once(postgres_url):
    start = time.time() + 15  # every process has imported medref by then
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(start), postgres_url], cwd=PROJECT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0] * 8, [err[-500:] for _, err in results if err]
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT value FROM ledger_meta WHERE key = 'schema_version'")).all()
    finally:
        engine.dispose()
    assert len(rows) == 1
