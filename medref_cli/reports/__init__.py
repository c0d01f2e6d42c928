"""Reports from the ledger: Tables 1-3 of the paper (markdown, LaTeX, CSV, JSON) and figures.

Reads only through ledger queries (`medref_cli.ledger.report_queries`).

May import: training, evaluation, runtime and the rooms under them (in practice evaluation, ledger, config); never cli, runs or bench.
"""

from medref_cli.reports.build import ReportOptions, build_report, build_table
from medref_cli.reports.figure_request import FigureRequest
from medref_cli.reports.figures import FIGURES, make_figure
from medref_cli.reports.identity import Components, ConfigCondition, components, identity_hash
from medref_cli.reports.output import RENDERERS, render, write_text_atomic
from medref_cli.reports.staleness import CurrentVersions, current_versions, stale_reasons

__all__ = [
    "FIGURES",
    "RENDERERS",
    "Components",
    "ConfigCondition",
    "CurrentVersions",
    "FigureRequest",
    "ReportOptions",
    "build_report",
    "build_table",
    "components",
    "current_versions",
    "identity_hash",
    "make_figure",
    "render",
    "stale_reasons",
    "write_text_atomic",
]
