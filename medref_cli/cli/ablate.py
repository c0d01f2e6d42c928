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

STATE_STYLE = {"done": "green", "stale": "yellow", "failed": "red", "running": "cyan", "pending": "white"}


def ablate(
    table: Annotated[int, typer.Option(help="Which grid: 2 (components) or 3 (augmentations and alignment).")],
    backbone: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    ratio: Annotated[list[float] | None, typer.Option(help="Label ratio(s) (default: the paper's).")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (split and training seed).")] = "0",
    dataset: Annotated[str | None, typer.Option(help="synthetic | qata | mosmed | custom.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data folder.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print every cell with its state; run nothing.")] = False,
    jobs: Annotated[int, typer.Option(help="Cells run side by side (CPU).")] = 1,
    gpus: Annotated[str | None, typer.Option(help="Comma-separated GPU ids: one cell per GPU.")] = None,
    grid_dir: Annotated[Path | None, typer.Option(help="Folder of the row files.")] = None,
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
    overrides = {"model.backbone": backbone, **data_overrides(dataset, data)}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    seed_list = int_list(seeds, "--seeds") or []
    gpu_list = int_list(gpus, "--gpus")
    cells = build_cells(table, config, set_ or [], overrides, ratio, seed_list, grid_dir)
    results_dir = load_config(config, overrides, set_ or ()).runtime.results_dir
    url = ledger_url(ledger, results_dir)
    identify(cells)
    assess(url, cells)
    rows = [{"row": c.row, "kind": c.kind, "ratio": c.ratio, "seed": c.seed, "state": c.state, "run": c.run_id}
            for c in cells]
    if dry_run:
        if json_:
            typer.echo(json.dumps(rows))
            return
        from rich.table import Table

        t = Table(title=f"Table {table}: {len(cells)} cells (dry run, nothing runs)")
        for col in ("row", "kind", "ratio", "seed", "state", "run"):
            t.add_column(col)
        for r in rows:
            style = STATE_STYLE[r["state"]]
            t.add_row(r["row"], r["kind"], f"{r['ratio']:g}", str(r["seed"]), f"[{style}]{r['state']}[/]",
                      str(r["run"] or "-"))
        console().print(t)
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
