"""`medref ablate --executor slurm|submitit-local`: the grid's cells as batch jobs, through submitit.

One job per cell. The shared burn-in of each (ratio, seed) group is submitted first and that group's
semi-supervised cells wait for it (`--dependency=afterok:<burn-in job>`), so it is trained once and
reused. A cell is submitted only when it is not done in the ledger and no earlier submission of it
is still queued or running; a rerun after failures, preemption or `scancel` submits only what is
missing. A job pending on a dependency that can no longer be met is cancelled and submitted again.

Each job runs the cell as its own `medref burnin|train --config <cell>.yaml` process. The ledger URL
is not in the job's pickle, script or command line: the job inherits it through its environment
(`MEDREF_LEDGER`, which sbatch exports from the submitting process). The submission is recorded
as an `ablate` run whose tags hold every cell and every job submitted (`jobs`: cell identity and
job id), which `--status` and `--cancel` read back. `submitit-local` runs the same path with
submitit's local executor on this machine (no dependencies there: it waits for the burn-ins before
submitting the rest, and then for the rest).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medref_cli.config import dump_yaml
from medref_cli.errors import MedrefError
from medref_cli.runs import slurm
from medref_cli.runs.ablation import Cell, assess

POLL_S = 5.0


@dataclass(frozen=True)
class SlurmResources:
    partition: str = ""
    account: str = ""
    gpus: int = 0
    cpus: int = 0
    minutes: int = 1440
    mem: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def submitit_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"time": self.minutes, "nodes": 1, "ntasks_per_node": 1,
                                  "stderr_to_stdout": True, "use_srun": False}
        if self.partition:
            params["partition"] = self.partition
        if self.account:
            params["account"] = self.account
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.cpus:
            params["cpus_per_task"] = self.cpus
        if self.mem:
            params["mem"] = self.mem
        return params


def resources(cfg, extra_items: list[str]) -> SlurmResources:
    """The `slurm.*` settings with the command line's --slurm-extra on top, checked (one line each)."""
    s = cfg.slurm
    if s.gpus_per_job < 0 or s.cpus_per_job < 0:
        raise MedrefError("--slurm-gpus-per-job and --slurm-cpus-per-job must be >= 0")
    extra = slurm.parse_extra([*s.extra.split(";"), *extra_items])
    return SlurmResources(s.partition.strip(), s.account.strip(), s.gpus_per_job, s.cpus_per_job,
                          slurm.time_minutes(s.time), slurm.check_mem(s.mem), extra)


def check_ledger(url: str, executor: str, allow_sqlite: bool) -> None:
    if executor == "slurm" and url.startswith("sqlite") and not allow_sqlite:
        raise MedrefError("--executor slurm refuses a SQLite ledger: SQLite on a network file system is unsafe "
                          "for jobs on several nodes; pass a PostgreSQL --ledger URL (or --allow-sqlite for "
                          "a single-node cluster)")


def preflight(executor: str, res: SlurmResources) -> None:
    """Everything that can refuse the submission, before anything is written or submitted."""
    slurm.require_submitit()
    if executor == "slurm":
        slurm.require_tools()
        slurm.check_partition(res.partition)


def cell_key(kind: str, config_hash: str, split_hash: str, data_hash: str) -> str:
    return f"{kind}:{config_hash}:{split_hash}:{data_hash}"


def key_of(cell: Cell) -> str:
    return cell_key(cell.kind, cell.config_hash, cell.split_hash, cell.data_hash)


def recorded_jobs(ledger_url: str) -> dict[str, dict]:
    """The newest job submitted for each cell identity, from every `ablate` run's tags."""
    from sqlalchemy import select

    from medref_cli.ledger import open_ledger
    from medref_cli.ledger.db import sqlite_file_missing
    from medref_cli.ledger.schema import Run

    if sqlite_file_missing(ledger_url):
        return {}
    ledger = open_ledger(ledger_url, create=False)
    try:
        with ledger.read() as session:
            tags = list(session.scalars(select(Run.tags).where(Run.kind == "ablate").order_by(Run.id)))
    finally:
        ledger.dispose()
    latest: dict[str, dict] = {}
    for tag in tags:
        for job in (tag or {}).get("jobs", []):
            latest[job["key"]] = job
    return latest


def live_states(jobs: dict[str, dict]) -> dict[str, slurm.JobState]:
    """Scheduler states of the recorded Slurm jobs (jobs of the local executor are not tracked)."""
    ids = [j["job_id"] for j in jobs.values() if j.get("scheduler") == "slurm"]
    if not ids or shutil.which("squeue") is None:
        return {}
    return slurm.job_states(ids)


def run_cell_job(kind: str, config_path: str, log_path: str) -> int:
    """Inside the job: the cell as its own medref process; the ledger URL comes from the environment."""
    cmd = [sys.executable, "-m", "medref_cli", kind, "--config", config_path, "--json"]
    with open(log_path, "a", encoding="utf-8") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if code != 0:
        raise RuntimeError(f"medref {kind} exited with code {code} (log: {log_path})")
    return code


@contextlib.contextmanager
def ledger_in_environment(url: str) -> Iterator[None]:
    """MEDREF_LEDGER set for the submission (sbatch exports it to the job), restored afterwards."""
    before = os.environ.get("MEDREF_LEDGER")
    os.environ["MEDREF_LEDGER"] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MEDREF_LEDGER", None)
        else:
            os.environ["MEDREF_LEDGER"] = before


def make_executor(executor: str, folder: Path, res: SlurmResources):
    submitit = slurm.require_submitit()
    if executor == "slurm":
        ex = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=0)
        ex.update_parameters(**res.submitit_parameters(), additional_parameters=dict(res.extra))
    else:
        ex = submitit.LocalExecutor(folder=str(folder / "%j"))
        ex.update_parameters(timeout_min=res.minutes)
    return ex


@dataclass
class Submission:
    run_id: int | None
    submitted: list[dict]
    skipped_live: list[str]
    outcomes: dict[str, str]


def plan(cells: list[Cell], jobs: dict[str, dict], states: dict[str, slurm.JobState]):
    """(cells to submit, cells left to a live earlier job, stuck jobs to cancel first)."""
    todo, waiting, stuck = [], [], []
    for cell in cells:
        if cell.state == "done":
            continue
        job = jobs.get(key_of(cell))
        state = states.get(job["job_id"]) if job else None
        if state is not None and state.live:
            waiting.append(cell)
            continue
        if state is not None and state.state in slurm.LIVE_STATES:
            stuck.append(state.job_id)  # pending on a dependency that failed: it would never start
        todo.append(cell)
    return todo, waiting, stuck


def _burnin_of(cell: Cell, cells: list[Cell]) -> Cell | None:
    """The shared burn-in a semi-supervised cell reuses (the group's burn-in that is not step-matched)."""
    if cell.kind == "burnin":
        return None
    return next((c for c in cells if c.group == cell.group and c.kind == "burnin"
                 and not c.cfg.train.step_matched), None)


def submit_grid(cells: list[Cell], ledger_url: str, executor: str, res: SlurmResources, table: int,
                wait: bool) -> Submission:
    from medref_cli.ledger import open_ledger, record_run
    from medref_cli.models.preflight import preflight_cells

    jobs = recorded_jobs(ledger_url)
    states = live_states(jobs)
    todo, waiting, stuck = plan(cells, jobs, states)
    if not todo:
        return Submission(None, [], [c.slug for c in waiting], {})
    preflight_cells([c.cfg for c in todo])
    slurm.cancel(stuck)
    base = cells[0].cfg
    ledger = open_ledger(ledger_url)
    try:
        with record_run(ledger, "ablate", base, backbone=base.model.backbone, label_ratio=None,
                        dataset=base.data.dataset) as run:
            workdir = Path(base.runtime.results_dir).resolve() / "ablate" / str(run.id)
            tags: dict[str, Any] = {"table": table, "executor": executor, "cells": [
                {"row": c.row, "kind": c.kind, "ratio": c.ratio, "seed": c.seed, "state": c.state, "run": c.run_id,
                 "config_hash": c.config_hash, "split_hash": c.split_hash} for c in cells], "jobs": []}
            run.update(tags=tags)
            ex = make_executor(executor, workdir / "submitit", res)
            handles: dict[str, Any] = {}
            with ledger_in_environment(ledger_url):
                burnins = [c for c in todo if c.kind == "burnin"]
                for cell in burnins:
                    handles[cell.slug] = _submit(ex, cell, workdir, executor, None, tags, run)
                if executor != "slurm":
                    _wait_all([handles[c.slug] for c in burnins])
                new_ids = {key_of(c): job for c in burnins for job in tags["jobs"] if job["slug"] == c.slug}
                for cell in (c for c in todo if c.kind != "burnin"):
                    after = None
                    burnin = _burnin_of(cell, cells)
                    if executor == "slurm" and burnin is not None and burnin.state != "done":
                        prior = new_ids.get(key_of(burnin)) or jobs.get(key_of(burnin))
                        after = prior["job_id"] if prior else None
                    handles[cell.slug] = _submit(ex, cell, workdir, executor, after, tags, run)
            outcomes: dict[str, str] = {}
            if wait or executor != "slurm":
                ended = _wait_ended(executor, handles, tags["jobs"])
                assess(ledger_url, todo)  # finished means: its finished run is in the ledger
                outcomes = {c.slug: "finished" if c.state == "done" else f"failed (job {ended[c.slug]})"
                            for c in todo}
            run.set_final({"n_cells": len(cells), "n_submitted": len(todo), "n_waiting": len(waiting),
                           "n_failed": sum(1 for v in outcomes.values() if v != "finished")})
            if outcomes:
                run.update(tags={**tags, "outcomes": outcomes})
        return Submission(run.id, tags["jobs"], [c.slug for c in waiting], outcomes)
    finally:
        ledger.dispose()


def _submit(ex, cell: Cell, workdir: Path, executor: str, after: str | None, tags: dict, run) -> Any:
    config_path = workdir / "cells" / f"{cell.slug}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(dump_yaml(cell.cfg))
    log_path = workdir / "logs" / f"{cell.slug}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if executor == "slurm":
        extra = dict(ex.parameters.get("additional_parameters") or {})
        extra.pop("dependency", None)
        if after:
            extra["dependency"] = f"afterok:{after}"
        ex.update_parameters(job_name=f"medref-{cell.slug}", additional_parameters=extra)
    try:
        handle = ex.submit(run_cell_job, cell.kind, str(config_path), str(log_path))
    except Exception as exc:  # noqa: BLE001 - sbatch refused the job: say why in one line
        reason = str(exc).strip().splitlines()
        raise MedrefError(f"submitting {cell.label} failed: {reason[-1] if reason else type(exc).__name__}") from None
    tags["jobs"].append({"key": key_of(cell), "slug": cell.slug, "row": cell.row, "kind": cell.kind,
                         "ratio": cell.ratio, "seed": cell.seed, "scheduler": executor,
                         "job_id": str(handle.job_id), "depends_on": after, "submitted_at": time.time()})
    run.update(tags=tags)
    return handle


def _wait_all(handles: list) -> None:
    while not all(h.done() for h in handles):
        time.sleep(1.0)


def _wait_ended(executor: str, handles: dict[str, Any], jobs: list[dict]) -> dict[str, str]:
    """Wait until every submitted job has ended; slug -> how the scheduler says it ended."""
    if executor != "slurm":
        _wait_all(list(handles.values()))
        return {slug: h.state for slug, h in handles.items()}
    ids = {j["slug"]: j["job_id"] for j in jobs}
    while True:
        states = slurm.job_states(list(ids.values()))
        slurm.cancel([s.job_id for s in states.values() if s.state in slurm.LIVE_STATES and not s.live])
        if not any(s.live for s in states.values()):  # (a job pending on a failed dependency never starts)
            break
        time.sleep(POLL_S)
    return {slug: states[i].state for slug, i in ids.items()}
