"""Golden files: every table in every format over the scenario ledger (tests/reports/conftest.py).

Regenerate deliberately, after checking the change is wanted, with
    MEDREF_REGEN_GOLDEN=1 .venv/bin/pytest tests/reports/test_golden.py
and review the diff of tests/reports/golden/ before committing it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from medref_cli.reports import ReportOptions, build_report, render

GOLDEN = Path(__file__).with_name("golden")
REGENERATE = os.environ.get("MEDREF_REGEN_GOLDEN") == "1"
SUFFIX = {"markdown": "md", "latex": "tex", "csv": "csv", "json": "json"}
FULL = {"with_paper": True, "explain": True}

CASES = [
    *[(f"table{n}.{SUFFIX[fmt]}", (n,), fmt, FULL) for n in (1, 2, 3) for fmt in SUFFIX],
    ("all_plain.md", (1, 2, 3), "markdown", {}),
    ("table2_per_image.md", (2,), "markdown", {"definition": "per-image", "with_paper": True}),
]


def normalise(text: str) -> str:
    """Config-group hashes change whenever a config key is added; the golden files do not care."""
    return re.sub(r"config group [0-9a-f]{8}", "config group <hash>", text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    text = normalise(text)
    if REGENERATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"no golden file {path}; create it with MEDREF_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@pytest.mark.parametrize(("name", "tables", "fmt", "options"), CASES, ids=[c[0] for c in CASES])
def test_golden(report_ledger, name, tables, fmt, options):
    ledger, current = report_ledger
    built = build_report(ledger, ReportOptions(tables=tables, **options), current=current)
    check_golden(name, render(built, fmt))


def test_cli_prints_the_same_table(report_ledger, scenario, cli, monkeypatch):
    """`medref report` end to end: today's code version is the scenario's, so nothing else is stale."""
    monkeypatch.setattr("medref_cli.ledger.provenance.code_version", lambda: scenario.current_code)
    ledger, _ = report_ledger
    code, out, err = cli("report", "--table", "2", "--format", "markdown", "--with-paper", "--explain",
                         "--ledger", ledger.url)
    assert (code, err) == (0, "")
    check_golden("table2.md", out)


@pytest.mark.parametrize("name", ["table1.tex", "table2.tex", "table3.tex"])
def test_latex_rows_have_one_cell_per_column(name):
    """Every body row of every tabular has exactly as many cells as its column spec declares."""
    columns = None
    for line in (GOLDEN / name).read_text(encoding="utf-8").splitlines():
        spec = re.match(r"\\begin\{tabular\}\{([lc]+)\}", line)
        if spec:
            columns = len(spec.group(1))
        elif line.endswith(r"\\") and r"\multicolumn" not in line:
            assert len(re.findall(r"(?<!\\)&", line)) == columns - 1, line
        elif line.endswith(r"\\"):  # the ratio header: multicolumn spans add up to the width
            spans = sum(int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", line))
            plain = len(re.findall(r"(?<!\\)&", line)) + 1 - len(re.findall(r"\\multicolumn", line))
            assert spans + plain == columns, line
