"""Render tables in a format, and write files atomically (temp file in the same folder + os.replace)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from medref_cli.errors import MedrefError
from medref_cli.files import new_folders
from medref_cli.reports import render_data, render_latex, render_markdown
from medref_cli.reports.model import Table

FILE_MODE = 0o644
RENDERERS: dict[str, Callable[[list[Table]], str]] = {
    "markdown": render_markdown.render,
    "latex": render_latex.render,
    "csv": render_data.render_csv,
    "json": render_data.render_json,
}


def render(tables: list[Table], fmt: str) -> str:
    if fmt not in RENDERERS:
        raise MedrefError(f"--format must be one of {', '.join(RENDERERS)}, got '{fmt}'")
    return RENDERERS[fmt](tables)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path next to `target` (same suffix); moved onto `target` only if the block succeeds."""
    target = Path(target)
    tmp_path: Path | None = None
    try:
        with new_folders(target.parent):
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
            os.close(fd)
            tmp_path = Path(tmp)
            tmp_path.chmod(FILE_MODE)  # mkstemp makes 0600; results are meant to be shared
            yield tmp_path
            os.replace(tmp_path, target)
    except OSError as exc:
        raise MedrefError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
