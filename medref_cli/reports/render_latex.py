"""LaTeX tables with booktabs (\\toprule, \\midrule, \\cmidrule, \\bottomrule); needs amssymb for
\\checkmark. Every piece of text is escaped; explanations become % comments."""

from __future__ import annotations

from itertools import groupby

from medref_cli.reports.model import Block, Cell, Column, Table, cell_parts, format_delta, format_number

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "\u00b1": r"$\pm$",
    "\u2020": r"\dag{}",
    "\u0394": r"$\Delta$",
    "\u2212": r"$-$",
    "\u2713": r"\checkmark{}",
}
MISSING = "--"


def latex_escape(text: str) -> str:
    """Text made safe for LaTeX: special characters escaped, the few symbols we use spelled out,
    and "--" kept as two hyphens (not an en dash)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "-" and text[i + 1:i + 2] == "-":
            out.append("-{}")
        else:
            out.append(_ESCAPES.get(ch, ch))
    return "".join(out)


def latex_cell(cell: Cell) -> str:
    parts = cell_parts(cell)
    if parts is None:
        return MISSING
    text = parts.mean if parts.std is None else f"{parts.mean} $\\pm$ {parts.std}"
    sup = parts.marker + (r"\dagger" if parts.stale else "")
    return f"{text} ({parts.n})" + (f"$^{{{sup}}}$" if sup else "")


def _signed(text: str) -> str:
    return f"${text}$" if text != "-" else MISSING


def _group_header(columns: list[Column], lead: int, width: int) -> tuple[str, str]:
    """The ratio row (with \\multicolumn over its metrics) and the \\cmidrule line under it."""
    cells, rules, start = [""] * lead, [], lead + 1
    for group, members in groupby(columns, key=lambda c: c.group):
        span = len(list(members)) * width
        cells.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(group)}}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + span - 1}}}")
        start += span
    return " & ".join(cells) + r" \\", " ".join(rules)


def _block_title(block: Block, ncols: int) -> str:
    return f"\\multicolumn{{{ncols}}}{{l}}{{\\textit{{{latex_escape(block.title)}}}}} \\\\"


def _measured_tabular(table: Table) -> list[str]:
    lead = 1 + len(table.check_columns)
    ncols = lead + len(table.columns)
    spec = "l" + "c" * len(table.check_columns) + "c" * len(table.columns)
    groups, rules = _group_header(table.columns, lead, 1)
    names = ["Method", *table.check_columns, *(c.label.split(" ", 1)[1] for c in table.columns)]
    lines = [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", groups, rules,
             " & ".join(latex_escape(n) for n in names) + r" \\"]
    for block in table.blocks:
        lines += [r"\midrule", _block_title(block, ncols)]
        for row in block.rows:
            checks = [r"\checkmark" if on else "" for on in row.checks]
            lines.append(" & ".join([latex_escape(row.label), *checks, *(latex_cell(c) for c in row.cells)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def _paper_tabular(table: Table, blocks: list[Block]) -> list[str]:
    ncols = 1 + 2 * len(table.columns)
    groups, rules = _group_header(table.columns, 1, 2)
    names = ["Paper"]
    for c in table.columns:
        names += [latex_escape(c.label.split(" ", 1)[1]), r"$\Delta$"]
    lines = [f"\\begin{{tabular}}{{l{'c' * (ncols - 1)}}}", r"\toprule", groups, rules,
             " & ".join(n if n.startswith("$") else latex_escape(n) for n in names) + r" \\"]
    for block in blocks:
        lines += [r"\midrule", _block_title(block, ncols)]
        for prow in block.paper_rows:
            cells = [latex_escape(prow.label)]
            for value, delta in zip(prow.values, prow.deltas, strict=True):
                cells += [MISSING if value is None else format_number(value), _signed(format_delta(delta))]
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def _environment(label: str, caption: str, tabular: list[str]) -> list[str]:
    return [r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(caption)}}}", f"\\label{{{label}}}",
            r"\resizebox{\linewidth}{!}{%", *tabular, "}", r"\end{table}"]


def _comments(table: Table) -> list[str]:
    lines = []
    for block in table.blocks:
        for row in block.rows:
            for group, reasons in row.explain.items():
                text = "; ".join(reasons)
                lines.append(f"% {block.title} / {row.label} / {group}: {text}".replace("\n", " "))
    return lines + [f"% {note}".replace("\n", " ") for note in table.notes]


def render_table(table: Table) -> str:
    lines = [f"% {table.title} -- needs \\usepackage{{booktabs,amssymb,graphicx}}"]
    lines += _environment(f"tab:medref-{table.key}", table.caption, _measured_tabular(table))
    if table.with_paper:
        shown = [b for b in table.blocks if b.paper_rows]
        if shown:
            lines += _environment(f"tab:medref-{table.key}-paper", table.paper_caption, _paper_tabular(table, shown))
        else:
            lines.append("% no paper numbers for the data sets and backbones shown")
    if table.explain:
        lines += _comments(table)
    return "\n".join(lines) + "\n"


def render(tables: list[Table]) -> str:
    return "\n".join(render_table(t) for t in tables)
