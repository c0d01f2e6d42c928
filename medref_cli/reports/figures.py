"""Figures from the ledger (matplotlib, Agg canvas, imported inside the functions).

`FIGURES` maps a name to a function `(ledger, FigureRequest) -> Path`; a new figure (e.g. the
paper's qualitative Fig. 2, once predictions are recorded) is one more entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from medref_cli.errors import MedrefError
from medref_cli.ledger.db import Ledger
from medref_cli.ledger.report_queries import RunRecord, metric_history, runs_by_id
from medref_cli.reports.figure_request import FigureRequest, image_format
from medref_cli.reports.layouts import ratio_label
from medref_cli.reports.output import atomic_path
from medref_cli.reports.qualitative import plot_qualitative
from medref_cli.reports.views import plot_views

PANEL_COLUMNS = 3


def run_label(run: RunRecord) -> str:
    ratio = ratio_label(run.label_ratio) if run.label_ratio is not None else "-"
    return f"run {run.id} ({run.kind}, {run.backbone or '-'}, {ratio}, seed {run.seed})"


def curve_panels(history: dict[int, dict[str, list[tuple[int, float]]]], wanted: tuple[str, ...]) -> list[str]:
    """The metric names to draw, one panel each, in name order."""
    recorded = sorted({name for per_run in history.values() for name in per_run})
    if not wanted:
        return recorded
    unknown = [m for m in wanted if m not in recorded]
    if unknown:
        raise MedrefError(f"no history of {', '.join(unknown)} in these runs; recorded: {', '.join(recorded) or 'none'}")
    return list(wanted)


def plot_curves(ledger: Ledger, request: FigureRequest) -> Path:
    """Training curves from the metric history: one panel per metric, one line per run."""
    if not request.run_ids:
        raise MedrefError("--figure curves needs --runs, e.g. --runs 3,4")
    fmt = image_format(request.out)
    runs = runs_by_id(ledger, list(request.run_ids))
    history = metric_history(ledger, request.run_ids)
    panels = curve_panels(history, request.metrics)
    if not panels:
        raise MedrefError(f"runs {', '.join(map(str, request.run_ids))} recorded no metric history")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(PANEL_COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = {run.id: f"C{i % 10}" for i, run in enumerate(runs)}  # one color per run in every panel
    for ax, name in zip(axes, panels, strict=False):
        for run in runs:
            points = history[run.id].get(name, [])
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, color=colors[run.id], marker="." if len(points) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[r.id], marker=".", label=run_label(r)) for r in runs]
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(runs), PANEL_COLUMNS), fontsize="small")
    with atomic_path(request.out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150)
    return request.out


FIGURES: dict[str, Callable[[Ledger, FigureRequest], Path]] = {
    "curves": plot_curves,
    "qualitative": plot_qualitative,
    "views": plot_views,
}


def make_figure(ledger: Ledger, name: str, request: FigureRequest) -> Path:
    if name not in FIGURES:
        raise MedrefError(f"unknown figure '{name}'; available: {', '.join(FIGURES)}")
    return FIGURES[name](ledger, request)
