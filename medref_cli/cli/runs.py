"""`medref runs`: list, show and diff the runs in the ledger."""

from __future__ import annotations

from typing import Annotated

import typer

from medref_cli.cli.common import JsonOpt, LedgerOpt, console, ledger_url

app = typer.Typer(help="List, show and compare recorded runs (`medref runs` alone lists them).")

RESUMABLE_KINDS = ("burnin", "train")  # `medref burnin|train --resume ID` continues these
STATUS_STYLE = {"finished": "green", "running": "cyan", "failed": "red", "killed": "yellow", "lost": "magenta"}


def _open(ledger: str | None):
    from medref_cli.ledger import open_ledger

    return open_ledger(ledger_url(ledger), create=False)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_list(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title=f"{len(rows)} run(s)")
    for col in ("id", "kind", "name", "status", "parent", "dataset", "backbone", "ratio", "seed", "started",
                "metrics"):
        table.add_column(col)
    for r in rows:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r["finals"].items())[:4])
        status = f"[{STATUS_STYLE.get(r['status'], 'white')}]{r['status']}[/]"
        table.add_row(*(_fmt(r[c]) for c in ("id", "kind", "name")), status,
                      *(_fmt(r[c]) for c in ("parent", "dataset", "backbone", "ratio", "seed", "started")), metrics)
    console().print(table)


@app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="split | burnin | train | evaluate | ablate ...")] = None,
    status: Annotated[str | None, typer.Option(help="running | finished | failed | killed | lost")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone name.")] = None,
    lost: Annotated[bool, typer.Option("--lost", help="Only lost runs (died without a word; resumable).")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the newest N.")] = None,
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List runs, oldest first, with their effective status (a stale heartbeat shows as lost)."""
    if ctx.invoked_subcommand is not None:
        return
    list_(kind, status, dataset, backbone, lost, limit, ledger, json_)


@app.command("list")
def list_(
    kind: Annotated[str | None, typer.Option(help="split | burnin | train | evaluate | ablate ...")] = None,
    status: Annotated[str | None, typer.Option(help="running | finished | failed | killed | lost")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone name.")] = None,
    lost: Annotated[bool, typer.Option("--lost", help="Only lost runs.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the newest N.")] = None,
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List runs (same as `medref runs`)."""
    import json

    from medref_cli.errors import MedrefError
    from medref_cli.ledger import RunFilter, list_runs
    from medref_cli.ledger.schema import RUN_STATUSES

    if lost:
        if status not in (None, "lost"):
            raise MedrefError("--lost and --status exclude each other")
        status = "lost"
    if status is not None and status not in RUN_STATUSES:
        raise MedrefError(f"unknown status '{status}'; expected one of {', '.join(RUN_STATUSES)}")
    led = _open(ledger)
    try:
        rows = list_runs(led, RunFilter(kind=kind, status=status, dataset=dataset, backbone=backbone, limit=limit))
    finally:
        led.dispose()
    if json_:
        typer.echo(json.dumps(rows, indent=1))
    else:
        _print_list(rows)
        for r in rows:
            if r["status"] == "lost" and r["kind"] in RESUMABLE_KINDS:
                typer.echo(f"resume run {r['id']}: medref {r['kind']} --resume {r['id']}")


@app.command("show")
def show(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    history: Annotated[int, typer.Option(help="Also print the last N points of each metric.")] = 0,
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Everything recorded about one run: provenance, config, metrics, artifacts."""
    import json

    from medref_cli.ledger import run_detail

    led = _open(ledger)
    try:
        detail = run_detail(led, run_id, history_points=max(history, 1))
    finally:
        led.dispose()
    # the last logged value of every metric (e.g. the SSL step's mixed_share, text_changed_share, pseudo_fg)
    last_values = {name: points[-1][1] for name, points in detail.get("history", {}).items()}
    if not history:
        detail.pop("history", None)
    if detail["kind"] in RESUMABLE_KINDS and detail["status"] in ("killed", "lost", "failed"):
        detail["resume_with"] = f"medref {detail['kind']} --resume {detail['id']}"
    if json_:
        typer.echo(json.dumps(detail, indent=1, default=str))
        return
    from rich.pretty import Pretty

    out = console()
    d = detail
    out.print(f"[bold]run {d['id']}[/] {d['kind']} '{d['name']}' [{STATUS_STYLE.get(d['status'], 'white')}]"
                  f"{d['status']}[/]  parent={_fmt(d['parent'])} children={d['children'] or '-'}")
    out.print(f"started {d['started']}  ended {_fmt(d['ended'])}  heartbeat {d['heartbeat']}  pid {d['pid']}")
    out.print(f"command: {d['command']}")
    if d["error"]:
        out.print(f"[red]error:[/] {d['error']}")
    if d.get("resume_with"):
        out.print(f"resume: {d['resume_with']}", markup=False)
    out.print(f"code: {d['code']['version']}  config_hash: {d['config_hash']}")
    out.print(f"data: {d['data']['dataset']} {d['data']['root']} hash {_fmt(d['data']['hash'])} "
                  f"({_fmt(d['data']['files'])} files)  split {_fmt(d['data']['split_hash'])}")
    out.print(f"seeds: {d['seeds']}  host: {d['host'].get('hostname')} {d['host'].get('cpu')} "
                  f"gpus={d['host'].get('gpus')}")
    job = d["host"].get("scheduler")
    if job:
        array = f" array task {job['array_task_id']}" if job.get("array_task_id") is not None else ""
        out.print(f"job: {job['name']} {job['job_id']} on {job.get('node')}{array}", markup=False)
    from medref_cli.ledger.provenance import weights_label

    for role in ("visual", "text"):
        label = weights_label((d.get("weights") or {}).get(role))
        if label:
            out.print(f"{role} weights: {label}", markup=False)
    out.print("final metrics:", Pretty(d["finals"]))
    out.print("metric history points:", Pretty(d["metric_points"]), f" per-image scores: {d['image_scores']}",
              f" per-image position scores: {d['position_scores']}" if d.get("position_scores") else "")
    if last_values:
        out.print("last logged values:", Pretty({k: round(v, 6) for k, v in last_values.items()}))
    for a in d["artifacts"]:
        out.print(f"artifact {a['role']}: {a['path']} ({a['bytes']} B, sha256 {a['sha256'][:16]}...)")
    if history:
        out.print("history:", Pretty(d["history"]))
    out.print("packages:", Pretty(d["packages"]))


@app.command("diff")
def diff(
    run_a: Annotated[int, typer.Argument(help="First run id.")],
    run_b: Annotated[int, typer.Argument(help="Second run id.")],
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Config differences, code version and data identity of two runs, and their test Dice with a paired
    per-image test of the second against the first."""
    import json

    from medref_cli.ledger import diff_runs

    led = _open(ledger)
    try:
        d = diff_runs(led, run_a, run_b)
        d["test_dice"] = _paired_test_dice(led, run_a, run_b)
    finally:
        led.dispose()
    if json_:
        typer.echo(json.dumps(d, indent=1, default=str))
        return
    from rich.table import Table

    table = Table(title=f"run {run_a} vs run {run_b}")
    for col in ("what", f"run {run_a}", f"run {run_b}", "same"):
        table.add_column(col)
    for key, fact in d["facts"].items():
        table.add_row(key, _fmt(fact["a"]), _fmt(fact["b"]), "yes" if fact["same"] else "[red]no[/]")
    for key, (va, vb) in d["config"].items():
        table.add_row(f"config {key}", _fmt(va), _fmt(vb), "[red]no[/]")
    for key, (va, vb) in d["packages"].items():
        table.add_row(f"package {key}", _fmt(va), _fmt(vb), "[red]no[/]")
    out = console()
    out.print(table)
    if not d["config"]:
        out.print("configs are identical")
    test = d["test_dice"]
    for key, label in (("global", "global"), ("per_image", "per image")):
        a, b = (_fmt(None if test[r][key] is None else 100 * test[r][key]) for r in ("a", "b"))
        out.print(f"test Dice {label}: run {run_a} {a}, run {run_b} {b}", soft_wrap=True)
    if test["paired"] is None:
        out.print("no paired test: the two runs share fewer than 2 scored test images")
    else:
        from medref_cli.reports.render_markdown import format_test
        from medref_cli.reports.stats import PairedTest

        out.print(f"run {run_b} - run {run_a}, per-image test Dice paired by image (bootstrap 95% CI, Wilcoxon): "
                  f"{format_test(PairedTest(**test['paired']))}", markup=False, soft_wrap=True)


def _paired_test_dice(led, run_a: int, run_b: int) -> dict:
    """Both runs' test Dice (fractions, from their finals) and the paired per-image test of b against a
    (percentage points; None when fewer than 2 scored test images pair up)."""
    from dataclasses import asdict

    from medref_cli.ledger.report_queries import image_scores, runs_by_id
    from medref_cli.reports.stats import paired_test

    finals = {r.id: r.finals for r in runs_by_id(led, (run_a, run_b))}
    ends = {key: {"global": finals[run_id].get("test_dice_global"),
                  "per_image": finals[run_id].get("test_dice_per_image_mean")}
            for key, run_id in (("a", run_a), ("b", run_b))}
    scores = image_scores(led, (run_a, run_b), split="test")
    a, b = ({sid: 100.0 * dice for sid, (dice, _iou) in scores[r].items()} for r in (run_a, run_b))
    test = paired_test(b, a)
    return {**ends, "paired": None if test is None else asdict(test)}
