"""What a figure is asked for (runs, output file, metrics, rows), and the image format its file name names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medref_cli.errors import MedrefError

IMAGE_FORMATS = ("png", "pdf", "svg")


@dataclass(frozen=True)
class FigureRequest:
    run_ids: tuple[int, ...]
    out: Path
    metrics: tuple[str, ...] = ()  # metric names to draw; empty = all recorded
    n: int = 4  # rows of the qualitative figure (test images)


def image_format(out: Path) -> str:
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise MedrefError(f"figure file {out} must end in .{', .'.join(IMAGE_FORMATS)}")
    return fmt
