"""`medref data check`: list every problem of a data set folder in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.common import JsonOpt

FORMAT_HELP = "Layout: auto | qata | lvit | mmiunet | mosmed | mosmed-frames."


def check(
    data: Annotated[Path, typer.Option("--data", help="Data set folder to scan.", show_default=False)],
    format: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    json_: JsonOpt = False,
) -> None:
    """Scan a data set: counts, missing/unreadable/mismatched files, masks, captions, labels,
    duplicate ids and the measured left/right convention. Exits non-zero when it finds an error."""
    import json

    from rich.console import Console

    from medref_cli.data.check import check_dataset, render_report
    from medref_cli.errors import MedrefError

    report = check_dataset(data, format)
    if json_:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        render_report(report, Console())
    if not report.ok:
        raise MedrefError(
            f"data check found {len(report.errors)} error(s) and {len(report.warnings)} warning(s) in {data}"
        )
