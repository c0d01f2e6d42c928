"""The qualitative figure (the paper's Fig. 2): test images, ground truth and each run's predicted mask.

Rows are chosen deterministically: the test samples with the largest spread (max - min) of the
recorded per-image Dice between the given runs (ties: sample id order); when the runs share no
recorded per-image test scores, the first N test ids in sorted order. Predictions come from the
runs' recorded checkpoints (`medref_cli.evaluation.predict_split`), cut at each run's threshold.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medref_cli.errors import MedrefError
from medref_cli.ledger.db import Ledger
from medref_cli.ledger.report_queries import RunRecord, image_scores, runs_by_id
from medref_cli.reports.figure_request import FigureRequest, image_format
from medref_cli.reports.output import atomic_path

if TYPE_CHECKING:
    import numpy as np

PANEL_INCHES = 1.9  # width and height of one image panel
CAPTION_INCHES = 0.55  # extra height per row for the caption under it
TITLE_INCHES = 0.45  # extra height for the column titles
DPI = 100
CAPTION_CHARS_PER_PANEL = 24


def choose_samples(available: Sequence[str], scores: Mapping[int, Mapping[str, tuple[float, float]]],
                   n: int) -> list[str]:
    """Up to `n` ids of `available`: largest Dice spread between the runs first, ties by id; with no
    sample scored by every run, the first `n` ids in sorted order."""
    ids = sorted(available)
    per_run = list(scores.values())
    common = [i for i in ids if per_run and all(i in run for run in per_run)]
    if not common:
        return ids[:n]
    spread = {i: max(run[i][0] for run in per_run) - min(run[i][0] for run in per_run) for i in common}
    return sorted(common, key=lambda i: (-spread[i], i))[:n]


def column_title(run: RunRecord) -> str:
    return f"run {run.id}\n{run.kind}, {run.backbone or '-'}"


def wrapped_caption(sample_id: str, caption: str, columns: int) -> str:
    return textwrap.fill(f"{sample_id}: {caption}", width=CAPTION_CHARS_PER_PANEL * columns)


def figure_inches(rows: int, columns: int) -> tuple[float, float]:
    return PANEL_INCHES * columns, TITLE_INCHES + rows * (PANEL_INCHES + CAPTION_INCHES)


def draw_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], captions: Sequence[str],
              scales: Sequence[float], out: Path, fmt: str, caption_lines: int = 1, title: str | None = None) -> None:
    """Image panels in rows (grayscale, column c drawn on 0..scales[c]), the column titles over the
    first row, each row's caption under it (`caption_lines` caption heights), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = len(titles)
    width, height = figure_inches(len(rows), columns)
    extra = (caption_lines - 1) * CAPTION_INCHES * len(rows) + (TITLE_INCHES if title else 0.0)
    fig = Figure(figsize=(width, height + extra), layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize="small")
    heights = [PANEL_INCHES + caption_lines * CAPTION_INCHES + (TITLE_INCHES if r == 0 else 0.0)
               for r in range(len(rows))]
    for r, subfig in enumerate(fig.subfigures(len(rows), 1, squeeze=False, height_ratios=heights)[:, 0]):
        for c, (ax, panel) in enumerate(zip(subfig.subplots(1, columns, squeeze=False)[0], rows[r], strict=True)):
            ax.imshow(panel, cmap="gray", vmin=0, vmax=scales[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize="small")
        subfig.supxlabel(captions[r], fontsize="small")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI)


def _draw(predictions, runs: list[RunRecord], out: Path, fmt: str) -> None:
    columns = 2 + len(runs)
    rows = [[predictions.images[r], predictions.masks[r], *(p.masks()[r] for p in predictions.runs)]
            for r in range(len(predictions.ids))]
    captions = [wrapped_caption(i, c, columns) for i, c in zip(predictions.ids, predictions.captions, strict=True)]
    draw_grid(rows, ["image", "ground truth", *(column_title(r) for r in runs)], captions,
              [255.0, *([1.0] * (columns - 1))], out, fmt)


def plot_qualitative(ledger: Ledger, request: FigureRequest) -> Path:
    """Rows: chosen test images; columns: image, ground truth, each run's thresholded prediction."""
    from medref_cli.evaluation.predict_split import predict_split

    if not request.run_ids:
        raise MedrefError("--figure qualitative needs --runs, e.g. --runs 3,4")
    if request.n < 1:
        raise MedrefError(f"--n must be at least 1, got {request.n}")
    fmt = image_format(request.out)
    runs = runs_by_id(ledger, list(request.run_ids))
    scores = image_scores(ledger, request.run_ids, "test")
    predictions = predict_split(ledger, request.run_ids, lambda ids: choose_samples(ids, scores, request.n))
    _draw(predictions, runs, request.out, fmt)
    return request.out
