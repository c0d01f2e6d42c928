#!/usr/bin/env python3
"""Keep a SQLite ledger as a plain-text SQL file beside the documents it backs, and rebuild it.

    scripts/ledger_snapshot.py save sqlite:///results/qata-cpu/ledger.db docs/results-cpu.ledger.sql
    scripts/ledger_snapshot.py restore docs/results-cpu.ledger.sql results/qata-cpu/ledger.db

`save` writes every table and row (one consistent read; the same ledger gives the same bytes);
`restore` builds a new ledger file from such a snapshot and refuses to touch an existing one.
Checkpoint files are not part of a snapshot: a restored ledger reports and compares its runs, and
`medref ablate` skips their finished cells, but resuming a run needs its files.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

HEADER = "-- medref ledger snapshot (scripts/ledger_snapshot.py); restore it, do not edit it\n"


def _die(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)


def _sqlite_file(url: str) -> Path:
    from medref_cli.ledger.db import sqlite_path

    path = sqlite_path(url)
    if path is None:
        _die(f"a snapshot is taken of a SQLite ledger (sqlite:///PATH), not {url.split(':', 1)[0]}")
    if not path.is_file():
        _die(f"no ledger at {path}")
    return path


def save(url: str, out: Path) -> None:
    path = _sqlite_file(url)
    # read-write, though it only reads: a read-only connection cannot remove the -wal and -shm files
    conn = sqlite3.connect(path, timeout=60)
    tmp = out.with_name(out.name + ".tmp")
    try:
        conn.execute("BEGIN")  # one snapshot of the ledger while runs may still write to it
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'ledger_meta'").fetchone() is None:
            _die(f"{path} is not a medref ledger (it has no ledger_meta table)")
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(HEADER)
            for line in conn.iterdump():
                fh.write(line + "\n")
        os.replace(tmp, out)
    except sqlite3.DatabaseError as exc:
        _die(f"cannot read the ledger at {path}: {exc}")
    finally:
        conn.close()
        tmp.unlink(missing_ok=True)


def restore(snapshot: Path, path: Path) -> None:
    if path.exists():
        _die(f"{path} already exists; restore a snapshot into a new ledger file")
    try:
        script = snapshot.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _die(f"cannot read the snapshot {snapshot}: {exc}")
    if not script.startswith(HEADER):
        _die(f"{snapshot} is not a ledger snapshot (scripts/ledger_snapshot.py save writes them)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".restoring")
    tmp.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(script)
        finally:
            conn.close()
        from medref_cli.errors import MedrefError
        from medref_cli.ledger.db import open_ledger

        try:
            open_ledger(f"sqlite:///{tmp}", create=False).dispose()  # a ledger this medref reads (upgraded)
        except MedrefError as exc:
            _die(str(exc))
        os.replace(tmp, path)
    except sqlite3.DatabaseError as exc:
        _die(f"the snapshot {snapshot} does not build a ledger: {exc}")
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="write a ledger's snapshot")
    s.add_argument("ledger", help="sqlite:///PATH of the ledger")
    s.add_argument("out", type=Path, help="the .sql file to write")
    r = sub.add_parser("restore", help="build a new ledger file from a snapshot")
    r.add_argument("snapshot", type=Path)
    r.add_argument("path", type=Path, help="the ledger file to create")
    args = parser.parse_args()
    if args.command == "save":
        save(args.ledger, args.out)
    else:
        restore(args.snapshot, args.path)


if __name__ == "__main__":
    main()
