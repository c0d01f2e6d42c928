"""`medref ablate`: run the cells of a grid that are not done, burn-ins first, N at a time.

Each cell runs as its own `medref burnin|train` process (so a crash in one cell never takes the
grid down) from the cell's fully resolved config, written to `results/ablate/<id>/cells/`, with
its output in `.../logs/`, and the ledger URL in its environment (MEDREF_LEDGER), never on its
command line. The shared burn-ins of the (ratio, seed) groups are queued first; a semi-supervised
cell starts as soon as its own group's burn-in has ended (and then reuses it), so a free slot never
waits for another group's burn-in. `--jobs N` runs N cells side by side; `--gpus
0,1` runs one cell per GPU. The grid itself is recorded as an `ablate` run whose tags list every
cell, its state before the grid ran and its outcome. Re-running an interrupted grid resumes it:
done cells are skipped, failed and stale ones run again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from medref_cli.config import dump_yaml
from medref_cli.runs.ablation import Cell


@dataclass
class Slot:
    device: str | None  # cuda:N for --gpus, None to keep the cell's device
    proc: subprocess.Popen | None = None
    cell: Cell | None = None
    log: object | None = None


def cell_command(cell: Cell, config_path: Path, device: str | None) -> list[str]:
    """A cell's command line. It names no ledger: the URL (a password in it would show in `ps`)
    travels in the environment, `cell_env`."""
    cmd = [sys.executable, "-m", "medref_cli", cell.kind, "--config", str(config_path), "--json"]
    if device is not None:
        cmd += ["--set", f"runtime.device={device}"]
    return cmd


def cell_env(ledger_url: str) -> dict[str, str]:
    """A cell's environment: this one's, with the grid's ledger URL in MEDREF_LEDGER."""
    from medref_cli.ledger.secrets import LEDGER_ENV

    return {**os.environ, "PYTHONUNBUFFERED": "1", LEDGER_ENV: ledger_url}


def _launch(slot: Slot, cell: Cell, workdir: Path, ledger_url: str) -> None:
    config_path = workdir / "cells" / f"{cell.slug}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(dump_yaml(cell.cfg))
    log_path = workdir / "logs" / f"{cell.slug}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    slot.log = log_path.open("w")
    slot.proc = subprocess.Popen(cell_command(cell, config_path, slot.device), stdout=slot.log,
                                 stderr=subprocess.STDOUT, env=cell_env(ledger_url))
    slot.cell = cell


def _reap(slot: Slot, outcomes: dict[str, str], on_done) -> bool:
    if slot.proc is None or slot.proc.poll() is None:
        return False
    code = slot.proc.returncode
    slot.log.close()
    outcomes[slot.cell.slug] = "finished" if code == 0 else f"failed (exit {code})"
    on_done(slot.cell, code)
    slot.proc, slot.cell, slot.log = None, None, None
    return True


def _shared_burnin(cell: Cell) -> bool:
    """The burn-in that a group's semi-supervised cells start from (not a step-matched control)."""
    return cell.kind == "burnin" and not cell.cfg.train.step_matched


def start_order(cells: list[Cell]) -> list[Cell]:
    """The queue of a grid's cells: the shared burn-ins first, then the rest in grid order."""
    return [c for c in cells if _shared_burnin(c)] + [c for c in cells if not _shared_burnin(c)]


def next_cell(queue: list[Cell], running: list[Cell]) -> int | None:
    """Index in `queue` of the first cell that may start now, None if every queued cell waits.

    A burn-in or supervised cell may always start; a semi-supervised cell waits while the shared
    burn-in of its (ratio, seed) group is queued or running, since it is going to reuse it."""
    waiting = {c.group for c in (*queue, *running) if _shared_burnin(c)}
    for i, cell in enumerate(queue):
        if cell.kind == "burnin" or cell.group not in waiting:
            return i
    return None


def run_cells(cells: list[Cell], slots: list[Slot], workdir: Path, ledger_url: str,
              outcomes: dict[str, str], on_done) -> None:
    """Run `cells` on the free slots until all have ended: shared burn-ins first, each
    semi-supervised cell once its group's burn-in has ended (`next_cell`)."""
    queue = start_order(cells)
    try:
        while queue or any(s.proc is not None for s in slots):
            for slot in slots:
                _reap(slot, outcomes, on_done)
            for slot in slots:
                if slot.proc is None and queue:
                    pick = next_cell(queue, [s.cell for s in slots if s.cell is not None])
                    if pick is None:
                        break
                    _launch(slot, queue.pop(pick), workdir, ledger_url)
            time.sleep(0.2)
    except BaseException:
        # interrupted: stop the cells (they record themselves as killed) and wait for them
        for slot in slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.terminate()
        for slot in slots:
            if slot.proc is not None:
                try:
                    slot.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    slot.proc.kill()
                if slot.cell is not None:
                    outcomes[slot.cell.slug] = "killed"
        raise


def make_slots(jobs: int, gpus: list[int] | None) -> list[Slot]:
    if gpus:
        return [Slot(f"cuda:{g}") for g in gpus]
    return [Slot(None) for _ in range(max(1, jobs))]


@dataclass
class AblateResult:
    run_id: int | None
    cells: list[Cell]
    outcomes: dict[str, str]


def ablate(cells: list[Cell], ledger_url: str, jobs: int, gpus: list[int] | None, table: int) -> AblateResult:
    """Record an `ablate` run and run every cell that is not done (burn-ins first)."""
    from medref_cli.ledger import open_ledger, record_run
    from medref_cli.runtime.device import resolve_device

    for gpu in gpus or []:
        resolve_device(f"cuda:{gpu}")
    todo = [c for c in cells if c.state != "done"]
    base = cells[0].cfg
    from medref_cli.models.preflight import preflight_cells

    preflight_cells([c.cfg for c in todo])  # every encoder the cells need, before the ablate run is recorded
    outcomes: dict[str, str] = {}
    ledger = open_ledger(ledger_url)
    try:
        with record_run(ledger, "ablate", base, backbone=base.model.backbone, label_ratio=None,
                        dataset=base.data.dataset) as run:
            workdir = Path(base.runtime.results_dir) / "ablate" / str(run.id)
            tags = {"table": table, "cells": [
                {"row": c.row, "kind": c.kind, "ratio": c.ratio, "seed": c.seed, "state": c.state,
                 "run": c.run_id, "config_hash": c.config_hash, "split_hash": c.split_hash} for c in cells]}
            run.update(tags=tags)
            done = {"n": 0}

            def on_done(cell: Cell, code: int) -> None:
                done["n"] += 1
                run.log_metrics({"cells_ended": done["n"], "cell_failed": float(code != 0)}, done["n"])

            slots = make_slots(jobs, gpus)
            run_cells(todo, slots, workdir, ledger_url, outcomes, on_done)
            failed = sum(1 for v in outcomes.values() if v != "finished")
            run.set_final({"n_cells": len(cells), "n_skipped": len(cells) - len(todo), "n_run": len(todo),
                           "n_failed": failed})
            run.update(tags={**tags, "outcomes": outcomes})
        return AblateResult(run.id, cells, outcomes)
    finally:
        ledger.dispose()
