"""`medref text ...`: caption tools (parse captions into position labels and spans)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Caption tools: positional labels and spans.", no_args_is_help=True)


@app.command("parse")
def parse(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Read captions from this file, one per line (default: stdin).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Parse captions (one per line) into JSON lines: caption, 6-bit label, phrase spans.

    A caption that cannot be parsed gives a line with "error"; the command then exits non-zero
    after all lines. Blank lines are skipped.
    """
    import json

    from medref_cli.errors import MedrefError
    from medref_cli.text.positions import CaptionParseError, parse_caption

    if file is not None:
        if not file.is_file():
            raise MedrefError(f"caption file not found: {file}")
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise MedrefError(f"cannot read caption file {file}: {exc}") from exc
    else:
        lines = sys.stdin.read().splitlines()

    total = failed = 0
    for line in lines:
        caption = line.strip()
        if not caption:
            continue
        total += 1
        try:
            position = parse_caption(caption)
        except CaptionParseError as exc:
            failed += 1
            record = {"caption": caption, "error": str(exc)}
        else:
            record = {
                "caption": caption,
                "label": list(position.label),
                "spans": [list(s) for s in position.spans],
            }
        print(json.dumps(record))
    if failed:
        raise MedrefError(f"{failed} of {total} captions could not be parsed")
