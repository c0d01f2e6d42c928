"""`medref ablate`: the paper's Table 2 or 3 grid, resumable, with a dry run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.common import (
    ConfigOpt,
    JsonOpt,
    LedgerOpt,
    SetOpt,
    console,
    data_overrides,
    int_list,
    ledger_url,
)

STATE_STYLE = {"done": "green", "stale": "yellow", "failed": "red", "running": "cyan", "pending": "white",
               "no-files": "magenta"}
EXECUTORS = ("local", "slurm", "submitit-local")


def ablate(
    table: Annotated[int, typer.Option(help="Which grid: 2 (components) or 3 (augmentations and alignment).")],
    backbone: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    ratio: Annotated[list[float] | None, typer.Option(help="Label ratio(s) (default: the paper's).")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (split and training seed).")] = "0",
    dataset: Annotated[str | None, typer.Option(help="synthetic | qata | mosmed | custom.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data folder.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print every cell with its state; run nothing.")] = False,
    jobs: Annotated[int, typer.Option(help="Cells run side by side (CPU; --executor local).")] = 1,
    gpus: Annotated[str | None, typer.Option(help="Comma-separated GPU ids: one cell per GPU.")] = None,
    grid_dir: Annotated[Path | None, typer.Option(help="Folder of the row files.")] = None,
    rows: Annotated[str | None, typer.Option(
        help="Comma-separated rows to run, by row file name (table 2: baseline,ema,posaug,tpatchmix,itcl); "
             "default: all. The cells are the full grid's, so a later full run skips them.")] = None,
    executor: Annotated[str | None, typer.Option(
        help="local (processes here, the default) | slurm (one Slurm job per cell, via submitit) | "
             "submitit-local (submitit's local executor; config runtime.executor).")] = None,
    slurm_partition: Annotated[str | None, typer.Option(help="Slurm partition (config slurm.partition).")] = None,
    slurm_gpus_per_job: Annotated[int | None, typer.Option(help="GPUs per cell job (slurm.gpus_per_job).")] = None,
    slurm_cpus_per_job: Annotated[int | None, typer.Option(help="CPUs per cell job (slurm.cpus_per_job).")] = None,
    slurm_time: Annotated[str | None, typer.Option(help="Time limit per job: minutes or [D-]HH:MM[:SS].")] = None,
    slurm_mem: Annotated[str | None, typer.Option(help="Memory per job, e.g. 32G (slurm.mem).")] = None,
    slurm_account: Annotated[str | None, typer.Option(help="Slurm account to charge (slurm.account).")] = None,
    slurm_extra: Annotated[list[str] | None, typer.Option(
        help="Further sbatch option KEY=VALUE, e.g. qos=high (repeatable; added to slurm.extra).")] = None,
    allow_sqlite: Annotated[bool, typer.Option(
        "--allow-sqlite", help="Let --executor slurm write a SQLite ledger (safe on one node only).")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With slurm: wait until every submitted job ended.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Each cell's ledger and scheduler state; runs nothing.")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="scancel the grid's queued and running jobs.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run a grid; cells already done (same config, split, data hash and code version) are skipped."""
    import json

    from medref_cli.config import load_config
    from medref_cli.errors import MedrefError
    from medref_cli.runs.ablate_run import ablate as run_grid
    from medref_cli.runs.ablation import assess, build_cells, identify

    if jobs < 1:
        raise MedrefError(f"--jobs must be >= 1, got {jobs}")
    if executor is not None and executor not in EXECUTORS:
        raise MedrefError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")
    if sum((dry_run, status, cancel)) > 1:
        raise MedrefError("--dry-run, --status and --cancel exclude each other")
    overrides = {"model.backbone": backbone, **data_overrides(dataset, data), "runtime.executor": executor,
                 "slurm.partition": slurm_partition, "slurm.gpus_per_job": slurm_gpus_per_job,
                 "slurm.cpus_per_job": slurm_cpus_per_job, "slurm.time": slurm_time, "slurm.mem": slurm_mem,
                 "slurm.account": slurm_account}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    seed_list = int_list(seeds, "--seeds") or []
    gpu_list = int_list(gpus, "--gpus")
    base = load_config(config, overrides, set_ or ())
    url = ledger_url(ledger, base.runtime.results_dir)
    chosen = base.runtime.executor
    submits = chosen != "local" and not (dry_run or status or cancel)
    if submits:
        from medref_cli.runs import ablate_submit

        if gpu_list:
            raise MedrefError("--gpus is for --executor local; ask for GPUs per job with --slurm-gpus-per-job")
        if jobs > 1:
            raise MedrefError(f"--jobs is for --executor local; with {chosen} every cell is a job of its own "
                              "and the scheduler decides how many run at once")
        ablate_submit.check_ledger(url, chosen, allow_sqlite)
        resources = ablate_submit.resources(base, slurm_extra or [])
        ablate_submit.preflight(chosen, resources)
    row_list = None if rows is None else [r.strip() for r in rows.split(",") if r.strip()]
    cells = build_cells(table, config, set_ or [], overrides, ratio, seed_list, grid_dir, row_list)
    identify(cells)
    assess(url, cells)
    if dry_run or status:
        _show(table, cells, url, json_, "dry run, nothing runs" if dry_run else "status")
        return
    if cancel:
        from medref_cli.runs.ablate_status import cancel_grid

        cancelled = cancel_grid(url, cells)
        typer.echo(json.dumps({"cancelled": cancelled}) if json_ else
                   f"cancelled {len(cancelled)} job(s)" + (f": {', '.join(cancelled)}" if cancelled else ""))
        return
    if submits:
        _submit(table, cells, url, chosen, resources, wait, json_)
        return
    result = run_grid(cells, url, jobs, gpu_list, table)
    summary = {"ablate_run": result.run_id, "cells": len(cells),
               "skipped": sum(1 for c in cells if c.state == "done"), "outcomes": result.outcomes}
    if json_:
        typer.echo(json.dumps(summary))
    else:
        failed = [k for k, v in result.outcomes.items() if v != "finished"]
        typer.echo(f"ablate run {result.run_id}: {len(cells)} cells, {summary['skipped']} already done, "
                   f"{len(result.outcomes)} run, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    if any(v != "finished" for v in result.outcomes.values()):
        raise typer.Exit(1)


def _show(table: int, cells, url: str, json_: bool, what: str) -> None:
    import json

    from medref_cli.runs.ablate_status import COLUMNS, grid_rows

    rows = grid_rows(url, cells)
    if json_:
        typer.echo(json.dumps(rows))
        return
    from rich.table import Table

    t = Table(title=f"Table {table}: {len(cells)} cells ({what})")
    for col in COLUMNS:
        t.add_column(col)
    for r in rows:
        style = STATE_STYLE[r["state"]]
        t.add_row(r["row"], r["kind"], f"{r['ratio']:g}", str(r["seed"]), f"[{style}]{r['state']}[/]",
                  *(str(r[c] or "-") for c in ("run", "job", "job_state", "node")))
    console().print(t)


def _submit(table: int, cells, url: str, executor: str, resources, wait: bool, json_: bool) -> None:
    import json

    from medref_cli.runs.ablate_submit import submit_grid

    result = submit_grid(cells, url, executor, resources, table, wait)
    done = sum(1 for c in cells if c.state == "done")
    summary = {"ablate_run": result.run_id, "executor": executor, "cells": len(cells), "skipped": done,
               "waiting": result.skipped_live, "submitted": [{"cell": j["slug"], "job": j["job_id"],
                                                               "after": j["depends_on"]} for j in result.submitted],
               "outcomes": result.outcomes}
    if json_:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"ablate run {result.run_id or '-'}: {len(cells)} cells, {done} already done, "
                   f"{len(result.skipped_live)} still queued or running, {len(result.submitted)} submitted"
                   + (f" (jobs {', '.join(j['job_id'] for j in result.submitted)})" if result.submitted else ""))
        failed = [k for k, v in result.outcomes.items() if v != "finished"]
        if result.outcomes:
            typer.echo(f"{len(result.outcomes) - len(failed)} finished, {len(failed)} failed"
                       + (f": {', '.join(failed)}" if failed else ""))
    if any(v != "finished" for v in result.outcomes.values()):
        raise typer.Exit(1)
