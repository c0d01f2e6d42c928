"""`medref report`: Tables 1-3 of the paper and figures, rebuilt from the ledger only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.common import LedgerOpt, ledger_url

FIGURE_DIR = Path("results") / "figures"


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Repeated options and comma lists alike: ['a,b', 'c'] -> ('a', 'b', 'c')."""
    return tuple(part.strip() for value in values or () for part in value.split(",") if part.strip())


def _tables(text: str) -> tuple[int, ...]:
    from medref_cli.errors import MedrefError

    if text.strip().lower() == "all":
        return (1, 2, 3)
    try:
        numbers = tuple(int(part) for part in _split([text]))
    except ValueError:
        raise MedrefError(f"--table must be 1, 2, 3, all or text, got '{text}'") from None
    if not numbers or any(n not in (1, 2, 3) for n in numbers):
        raise MedrefError(f"--table must be 1, 2, 3, all or text, got '{text}'")
    return numbers


def _run_ids(text: str | None) -> tuple[int, ...]:
    from medref_cli.errors import MedrefError

    try:
        return tuple(int(part) for part in _split([text or ""]))
    except ValueError:
        raise MedrefError(f"--runs expects run ids separated by commas, e.g. 3,4; got '{text}'") from None


def _figure(ledger, name: str, runs: str | None, metric: str | None, out: Path | None, n: int) -> Path:
    from medref_cli.reports import FigureRequest, make_figure

    ids = _run_ids(runs)
    target = out or FIGURE_DIR / f"{name}_runs_{'-'.join(map(str, ids)) or 'none'}.png"
    return make_figure(ledger, name, FigureRequest(ids, target, _split([metric] if metric else None), n))


def report(
    table: Annotated[str, typer.Option("--table", metavar="1|2|3|all|text",
                                       help="1, 2, 3 (or a comma list), all, or text (the text-reliance table of "
                                            "`medref evaluate --text-mode` runs).")] = "all",
    format_: Annotated[str, typer.Option("--format", metavar="markdown|latex|csv|json", help="markdown | latex | csv | json.")] = "markdown",
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write to FILE (atomically) instead of stdout.",
                                                show_default=False)] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", metavar="NAME", help="Only these data sets (e.g. qata).",
                                                         show_default=False)] = None,
    backbone: Annotated[list[str] | None, typer.Option("--backbone", metavar="NAME", help="Only these backbones.",
                                                          show_default=False)] = None,
    metric: Annotated[str | None, typer.Option(
        "--metric", metavar="NAMES", help="Table columns: dice,miou (default: as in the paper; Table 3 Dice only). "
                         "With --figure: the metric names to plot.", show_default=False)] = None,
    definition: Annotated[str, typer.Option("--definition", metavar="global|per-image", help="global (the paper's) | per-image.")] = "global",
    with_paper: Annotated[bool, typer.Option("--with-paper", help="Add the paper's numbers as a separate "
                                                                  "reference block with deltas.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Say per cell which runs count and why "
                                                            "others do not.")] = False,
    where: Annotated[list[str] | None, typer.Option(
        "--where", metavar="KEY=VALUE", help="Only runs whose recorded config has KEY=VALUE, e.g. train.epochs=20 (repeatable).",
        show_default=False)] = None,
    figure: Annotated[str | None, typer.Option("--figure", metavar="NAME", help="Draw a figure instead: curves | qualitative | views.",
                                                  show_default=False)] = None,
    runs: Annotated[str | None, typer.Option("--runs", metavar="IDS", help="Run ids for --figure, e.g. 3,4.",
                                                show_default=False)] = None,
    ratio: Annotated[list[float] | None, typer.Option(
        "--ratio", metavar="R", help="Label-ratio columns, e.g. 0.05 (repeatable; default: the paper's).",
        show_default=False)] = None,
    details: Annotated[bool, typer.Option("--details", help="Add the runs behind each cell: wall time, both Dice "
                                                            "definitions, logged rates, paired tests per seed and "
                                                            "row by row, share of the gap to 100% supervision "
                                                            "(markdown and json).")] = False,
    n: Annotated[int, typer.Option("--n", metavar="N", help="Rows of --figure qualitative (test images) or views (train images).")] = 4,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", metavar="CODE", help="Judge staleness as of this recorded code version (commit or prefix) "
                                        "instead of this checkout's, e.g. to rebuild a document of a grid "
                                        "made by a fixed commit.", show_default=False)] = None,
    code: Annotated[str | None, typer.Option(
        "--code", metavar="CODE", help="Count only the runs made by this recorded code version (commit or "
                                       "prefix), e.g. a grid's, so that later runs of the same config do not "
                                       "supersede its cells; staleness is judged as of it unless --as-of "
                                       "says otherwise.", show_default=False)] = None,
    ledger: LedgerOpt = None,
) -> None:
    """Rebuild the paper's Tables 1-3 (or a figure) from the runs recorded in the ledger."""
    from medref_cli.errors import MedrefError
    from medref_cli.ledger import open_ledger
    from medref_cli.reports import ConfigCondition, ReportOptions, build_report, render, write_text_atomic

    if details and format_ not in ("markdown", "json"):
        raise MedrefError(f"--details is shown in markdown and json, not in {format_}")
    led = open_ledger(ledger_url(ledger), create=False)
    try:
        if figure is not None:
            typer.echo(f"wrote {_figure(led, figure, runs, metric, out, n)}")
            return
        if table.strip().lower() == "text":
            from medref_cli.reports.text_table import build_text_table

            text = render([build_text_table(led, _split(dataset), _split(backbone))], format_)
        else:
            from medref_cli.reports.staleness import as_of_versions

            made_by = as_of_versions(led, code, "--code") if code is not None else None
            options = ReportOptions(
                tables=_tables(table),
                datasets=_split(dataset),
                backbones=_split(backbone),
                metrics=_split([metric]) if metric is not None else None,
                definition=definition,
                with_paper=with_paper,
                explain=explain,
                where=tuple(ConfigCondition.parse(w) for w in where or ()),
                details=details,
                ratios=tuple(ratio or ()),
                code=made_by.code_version if made_by is not None else "",
            )
            current = as_of_versions(led, as_of) if as_of is not None else made_by
            text = render(build_report(led, options, current), format_)
    finally:
        led.dispose()
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text_atomic(out, text)
        typer.echo(f"wrote {out}")
