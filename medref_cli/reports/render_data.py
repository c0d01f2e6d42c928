"""CSV and JSON for tools. CSV is long (tidy): one line per cell, measured and paper lines apart
(`section`); JSON is the whole table model. Floats are rounded to 6 decimals."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any

from medref_cli.reports.model import Table, plain_cell_text

CSV_COLUMNS = (
    "table", "block", "section", "row", "components", "ratio", "metric", "definition", "mean", "std", "n", "stale",
    "marker", "p_value", "n_images", "mean_difference_pp", "ci_low_pp", "ci_high_pp", "run_ids", "text",
    "compared_with", "delta_pp",
)
DIGITS = 6


def _num(value: float | None) -> str:
    return "" if value is None else f"{round(value, DIGITS):.{DIGITS}g}"


def _measured_lines(table: Table) -> list[dict[str, Any]]:
    lines = []
    for block in table.blocks:
        for row in block.rows:
            on = ";".join(name for name, checked in zip(table.check_columns, row.checks, strict=True) if checked)
            for col, cell in zip(table.columns, row.cells, strict=True):
                sig = cell.significance
                line = {
                    "table": table.key, "block": block.title, "section": "measured", "row": row.label,
                    "components": on, "ratio": col.group, "metric": col.metric, "definition": table.definition,
                    "mean": _num(cell.mean), "std": _num(cell.std), "n": cell.n, "stale": int(cell.stale),
                    "marker": cell.marker, "run_ids": " ".join(map(str, cell.run_ids)),
                    "text": plain_cell_text(cell),
                }
                if sig is not None:
                    line.update(p_value=_num(sig.p_value), n_images=sig.n_images,
                                mean_difference_pp=_num(sig.mean_difference), ci_low_pp=_num(sig.ci_low),
                                ci_high_pp=_num(sig.ci_high))
                if table.explain:
                    line["explain"] = "; ".join(row.explain.get(col.group, []))
                lines.append(line)
    return lines


def _paper_lines(table: Table) -> list[dict[str, Any]]:
    lines = []
    for block in table.blocks:
        for prow in block.paper_rows:
            for col, value, delta in zip(table.columns, prow.values, prow.deltas, strict=True):
                lines.append({
                    "table": table.key, "block": block.title, "section": "paper", "row": prow.label,
                    "ratio": col.group, "metric": col.metric, "definition": "global", "mean": _num(value),
                    "compared_with": prow.compared_with or "", "delta_pp": _num(delta),
                })
    return lines


def render_csv(tables: list[Table]) -> str:
    explain = any(t.explain for t in tables)
    columns = [*CSV_COLUMNS, "explain"] if explain else list(CSV_COLUMNS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for table in tables:
        writer.writerows(_measured_lines(table))
        writer.writerows(_paper_lines(table))
    return buffer.getvalue()


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, DIGITS)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj


def table_json(table: Table) -> dict[str, Any]:
    tree = asdict(table)
    for block, block_tree in zip(table.blocks, tree["blocks"], strict=True):
        for row, row_tree in zip(block.rows, block_tree["rows"], strict=True):
            for cell, cell_tree in zip(row.cells, row_tree["cells"], strict=True):
                cell_tree["text"] = plain_cell_text(cell)
            if not table.explain:
                row_tree.pop("explain")
    if table.details is None:
        tree.pop("details")
    if not table.explain:
        tree.pop("notes")
    if not table.with_paper:
        tree.pop("paper_caption")
        for block_tree in tree["blocks"]:
            block_tree.pop("paper_rows")
    return _rounded(tree)


def render_json(tables: list[Table]) -> str:
    return json.dumps({"tables": [table_json(t) for t in tables]}, indent=1, ensure_ascii=False) + "\n"
