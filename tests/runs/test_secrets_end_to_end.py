"""A ledger password given with `--ledger` is found nowhere: not in the ledger (any table, any
column), not on stdout or stderr, not in any file under the results folder, not on the command
line of any child process. Runs `train --nproc 2` (launch workers), `ablate --jobs 2` (one process
per cell) and failing commands on tiny settings, against the local PostgreSQL server (a role
with a password), while a watcher reads /proc/<pid>/cmdline of every descendant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, table, text
from sqlalchemy.engine import make_url

from .tiny import TINY, _data

PROJECT = Path(__file__).resolve().parents[2]
GRID = PROJECT / "experiments" / "ablations"
EPOCHS = ["--set", "train.burnin_epochs=1", "--set", "train.epochs=1"]


class ChildWatcher(threading.Thread):
    """Collects the command line of every descendant of `root` while it runs.

    A child between fork and exec (`git` for the code version, any subprocess) still shows its
    parent's argv in /proc: that is the command line the user typed, not one medref built, so a
    descendant whose argv is byte for byte the root's own is counted in `forks`, not in `seen`."""

    def __init__(self, root: int, argv: list[str]) -> None:
        super().__init__(daemon=True)
        self.root, self.seen, self.forks, self.stop = root, {}, 0, threading.Event()
        self.root_cmdline = b"".join(a.encode() + b"\0" for a in argv)

    @staticmethod
    def _parents() -> dict[int, int]:
        parents = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        return parents

    def run(self) -> None:
        while not self.stop.is_set():
            parents = self._parents()
            for pid in parents:
                p, hops = pid, 0
                while p in parents and p != self.root and hops < 50:
                    p, hops = parents[p], hops + 1
                if p == self.root and pid != self.root:
                    try:
                        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if cmdline == self.root_cmdline:
                        self.forks += 1
                    elif cmdline:
                        self.seen[(pid, cmdline)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
            self.stop.wait(0.05)


def _watched(argv: list[str], **popen: object) -> tuple[subprocess.Popen, ChildWatcher, str, str]:
    """Run `argv` to its end while a ChildWatcher reads its descendants; (process, watcher, stdout, stderr)."""
    proc = subprocess.Popen(argv, **popen)
    watcher = ChildWatcher(proc.pid, argv)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=1800)
    finally:
        watcher.stop.set()
        watcher.join()
    return proc, watcher, out, err


def _medref(args: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `medref ARGS`; its result and the command lines of its descendants."""
    proc, watcher, out, err = _watched([sys.executable, "-m", "medref_cli", *args], cwd=cwd, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.CompletedProcess(args, proc.returncode, out, err), list(watcher.seen.values())


def _ledger_text(url: str) -> dict[str, str]:
    """Every table's rows, every column, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            dump = {}
            for name in names:
                cols = [c["name"] for c in inspect(conn).get_columns(name)]
                rows = conn.execute(select(*[text(f'"{c}"') for c in cols]).select_from(table(name))).all()
                dump[name] = "\n".join(repr(tuple(r)) for r in rows)
            return dump
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_ledger_password_is_found_nowhere(postgres_url, tmp_path, synthetic_root):
    password = str(make_url(postgres_url).password)
    assert len(password) >= 8, "the test role has a real password"
    wrong = "wr0ngpw-" + password[::-1]
    env = {k: v for k, v in os.environ.items() if k not in ("MEDREF_LEDGER", "PGPASSWORD", "PGPASSFILE")}
    env.update(PYTHONPATH=str(PROJECT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    ledger = ["--ledger", postgres_url]
    outputs: list[str] = []
    children: list[str] = []

    def medref(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
        done, seen = _medref(list(args), tmp_path, env)
        outputs.extend([done.stdout, done.stderr])
        children.extend(seen)
        assert done.returncode == expect, done.stderr[-3000:].replace(password, "<PASSWORD>")
        return done

    train = medref("train", *_data(synthetic_root), *TINY, "--nproc", "2", "--ratio", "0.25",
                   "--burnin-epochs", "1", "--epochs", "1", *ledger, "--json")
    train_id = json.loads(train.stdout)["run_id"]
    n_train_children = len(children)
    assert any("medref_cli.runs.launch" in c for c in children), "the watcher saw the launch workers"

    grid = [a for a in TINY if a != "--cpu"] + ["--set", "runtime.device=cpu", *EPOCHS]
    medref("ablate", "--table", "2", "--ratio", "0.5", "--seeds", "0", "--jobs", "2", "--grid-dir", str(GRID),
           *_data(synthetic_root), *grid, *ledger, "--json")
    cells = [c for c in children[n_train_children:] if " -m medref_cli " in c and "--config" in c]
    assert len({c for c in cells}) >= 6, "the watcher saw every cell's process"

    # failing commands: a run that is not there, a wrong password
    missing = medref("evaluate", "999999", "--cpu", *ledger, expect=2)
    assert "no run 999999 in the ledger" in missing.stderr and ":***@" in missing.stderr
    bad = make_url(postgres_url).set(password=wrong).render_as_string(hide_password=False)
    refused = medref("runs", "--ledger", bad, expect=2)
    assert refused.stderr.startswith("medref: error: cannot open the ledger at ") and ":***@" in refused.stderr

    shown = medref("runs", "show", str(train_id), *ledger)
    assert ":***@" in shown.stdout, "runs show prints the recorded command, masked"
    medref("runs", "show", str(train_id), "--json", *ledger)
    medref("runs", "--json", *ledger)

    dump = _ledger_text(postgres_url)
    assert {"runs", "metric_history", "final_metrics", "artifacts"} <= set(dump)
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            commands = [r[0] for r in conn.execute(text("SELECT command FROM runs"))]
    finally:
        engine.dispose()
    assert any("--ledger postgresql+psycopg://medref_ci:***@" in c for c in commands)
    assert not any("--ledger" in c for c in commands if " --config " in c), "cells got no --ledger"

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in files), "the cells' logs are searched"
    for secret in (password, wrong):
        for name, content in dump.items():
            assert secret not in content, f"the ledger's table {name} holds the password"
        for i, output in enumerate(outputs):
            assert secret not in output, f"output {i} of the commands holds the password"
        for cmdline in children:
            assert secret not in cmdline, "a child's command line holds the password"
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{path} holds the password"


def test_the_watcher_sees_a_built_command_line_and_sets_a_fork_of_the_root_apart():
    """The watcher above can fail: a child started with the secret on its command line is seen; a
    fork of the root (the user's own argv, as between fork and exec) is counted apart."""
    secret = "s3cret-on-the-line"
    script = ("import os, subprocess, sys, time\n"
              "pid = os.fork()\n"
              "if pid == 0:\n    time.sleep(1.0)\n    os._exit(0)\n"
              "subprocess.run([sys.executable, '-c', 'import time; time.sleep(1.0)', 'child-' + sys.argv[1]])\n"
              "os.waitpid(pid, 0)\n")
    proc, watcher, _out, _err = _watched([sys.executable, "-c", script, secret])
    assert proc.returncode == 0
    seen = list(watcher.seen.values())
    assert any(f"child-{secret}" in c for c in seen), seen
    assert watcher.forks >= 1 and not any(c.endswith(f" {secret} ") for c in seen)
