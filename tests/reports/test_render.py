"""Renderers: LaTeX escaping and booktabs structure, markdown escaping, cell text, atomic writes."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os

import pytest

from medref_cli.reports.model import Block, Cell, Column, PaperRow, Row, Significance, Table, plain_cell_text
from medref_cli.reports.output import render, write_text_atomic
from medref_cli.reports.render_latex import latex_cell, latex_escape
from medref_cli.reports.render_markdown import md_escape


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50%", r"50\%"),
        ("test_dice_global", r"test\_dice\_global"),
        ("R&D", r"R\&D"),
        ("$5", r"\$5"),
        ("#1", r"\#1"),
        ("{x}", r"\{x\}"),
        ("a~b", r"a\textasciitilde{}b"),
        ("x^2", r"x\textasciicircum{}2"),
        ("C:\\dir", r"C:\textbackslash{}dir"),
        ("p<0.05, q>1", r"p\textless{}0.05, q\textgreater{}1"),
        ("a|b", r"a\textbar{}b"),
        ("86 \u00b1 1", r"86 $\pm$ 1"),
        ("\u2020 stale", r"\dag{} stale"),
        ("\u0394 = a \u2212 b", r"$\Delta$ = a $-$ b"),
        ("--explain", r"-{}-explain"),
        ("MosMedData+ (CVPR '22)", "MosMedData+ (CVPR '22)"),
        ("Ours(MMI-UNet)", "Ours(MMI-UNet)"),
    ],
)
def test_latex_escape(text, expected):
    assert latex_escape(text) == expected


SIG = Significance("Baseline", 10, 1.5, 1.0, 2.0, 0.004, "**")


@pytest.mark.parametrize(
    ("cell", "latex", "plain"),
    [
        (Cell(), "--", "-"),
        (Cell(86.391, None, 1), "86.39 (n=1)", "86.39 (n=1)"),
        (Cell(86.386, 0.2149, 3), r"86.39 $\pm$ 0.21 (n=3)", "86.39 \u00b1 0.21 (n=3)"),
        (Cell(86.39, 0.21, 3, stale=True), r"86.39 $\pm$ 0.21 (n=3)$^{\dagger}$", "86.39 \u00b1 0.21 (n=3)\u2020"),
        (Cell(86.39, 0.21, 3, stale=True, significance=SIG), r"86.39 $\pm$ 0.21 (n=3)$^{**\dagger}$",
         "86.39 \u00b1 0.21 (n=3)**\u2020"),
    ],
)
def test_cell_text(cell, latex, plain):
    assert latex_cell(cell) == latex
    assert plain_cell_text(cell) == plain


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a|b", r"a\|b"), ("81.2 (n=2)**", r"81.2 (n=2)\*\*"), ("x_y", r"x\_y"), ("<b>", r"\<b\>"), ("ok 1%", "ok 1%")],
)
def test_markdown_escape(text, expected):
    assert md_escape(text) == expected


def small_table(**changes) -> Table:
    columns = [Column("1%", 0.01, "dice"), Column("1%", 0.01, "miou")]
    rows = [
        Row("Base_line & co", (False, True), [Cell(80.0, 0.5, 2), Cell()], {"1%": ["n=2: runs 1, 2"]}),
        Row("50% | Ours", (True, True), [Cell(82.0, None, 1, significance=SIG), Cell(70.0, None, 1, stale=True)],
            {"1%": ["stale: run 3 (other code version)"]}),
    ]
    paper = [PaperRow("Paper_row", [81.0, None], [1.0, None], "50% | Ours")]
    table = Table(key="table9", title="Table 9: A_title", caption="Caption with 5% and p<0.05.", columns=columns,
                  check_columns=("T-S EMA", "ITCL"), blocks=[Block("Data_set", rows, paper)],
                  paper_caption="Paper \u0394.", notes=["not shown: run 4"], with_paper=True, explain=True)
    return dataclasses.replace(table, **changes)


def test_latex_table_uses_booktabs_and_escapes_every_label():
    tex = render([small_table()], "latex")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){4-5}"):
        assert rule in tex
    assert r"Base\_line \& co &  & \checkmark & 80.00 $\pm$ 0.50 (n=2) & -- \\" in tex
    assert r"50\% \textbar{} Ours & \checkmark & \checkmark & 82.00 (n=1)$^{**}$ & 70.00 (n=1)$^{\dagger}$ \\" in tex
    assert r"\caption{Caption with 5\% and p\textless{}0.05.}" in tex
    assert r"Paper\_row & 81.00 & $+1.00$ & -- & -- \\" in tex
    assert "% Data_set / 50% | Ours / 1%: stale: run 3 (other code version)" in tex
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert body.count("{") == body.count("}")
    assert body.count(r"\begin{tabular}") == body.count(r"\end{tabular}") == 2


def test_markdown_table_has_one_row_per_method_and_escapes_pipes():
    md = render([small_table()], "markdown")
    assert "| Method | T-S EMA | ITCL | 1% Dice | 1% mIoU |" in md
    assert "| 50% \\| Ours | \u2713 | \u2713 | 82.00 (n=1)\\*\\* | 70.00 (n=1)\u2020 |" in md
    assert "| Paper\\_row | 50% \\| Ours | 81.00 | +1.00 | - | - |" in md
    assert "- Data\\_set / 50% \\| Ours / 1%: stale: run 3 (other code version)" in md


def test_explanations_and_paper_rows_only_when_asked():
    md = render([small_table(with_paper=False, explain=False)], "markdown")
    assert "Paper" not in md and "stale: run 3" not in md
    data = json.loads(render([small_table(with_paper=False, explain=False)], "json"))
    assert "paper_rows" not in data["tables"][0]["blocks"][0] and "explain" not in data["tables"][0]["blocks"][0]["rows"][0]


def test_csv_is_one_line_per_cell_with_paper_lines_apart():
    lines = list(csv.DictReader(io.StringIO(render([small_table()], "csv"))))
    measured = [r for r in lines if r["section"] == "measured"]
    paper = [r for r in lines if r["section"] == "paper"]
    assert len(measured) == 4 and len(paper) == 2
    ours = next(r for r in measured if r["row"] == "50% | Ours" and r["metric"] == "dice")
    assert (ours["mean"], ours["n"], ours["marker"], ours["p_value"], ours["components"]) == (
        "82", "1", "**", "0.004", "T-S EMA;ITCL")
    assert paper[0]["delta_pp"] == "1" and paper[0]["compared_with"] == "50% | Ours"


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "table.md"
    write_text_atomic(target, "first\n")
    write_text_atomic(target, "second\n")
    assert target.read_text() == "second\n"
    assert sorted(os.listdir(target.parent)) == ["table.md"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file(tmp_path):
    from medref_cli.reports.output import atomic_path

    target = tmp_path / "table.md"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["table.md"]
