"""Markdown that renders on GitHub: one pipe table per block, caption, paper block, explanations."""

from __future__ import annotations

from medref_cli.reports.model import (
    Block,
    BlockDetail,
    RunDetail,
    Significance,
    Table,
    format_delta,
    format_number,
    plain_cell_text,
)
from medref_cli.reports.stats import PairedTest, SeedStats

CHECK = "\u2713"
DELTA = "\u0394"
_SPECIAL = set("\\`*_|<>[]#")


def md_escape(text: str) -> str:
    """Escape characters GitHub markdown would read as markup (emphasis, table pipes, HTML)."""
    return "".join(f"\\{ch}" if ch in _SPECIAL else ch for ch in text)


def _table_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    align = [":--"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def _measured(table: Table, block: Block) -> list[str]:
    header = ["Method", *table.check_columns, *(c.label for c in table.columns)]
    rows = [
        [md_escape(row.label), *(CHECK if on else "" for on in row.checks),
         *(md_escape(plain_cell_text(cell)) for cell in row.cells)]
        for row in block.rows
    ]
    return _table_lines([md_escape(h) for h in header], rows)


def _paper(table: Table, block: Block) -> list[str]:
    header = ["Paper", "vs. our row"]
    for c in table.columns:
        header += [c.label, DELTA]
    rows = []
    for prow in block.paper_rows:
        cells = [md_escape(prow.label), md_escape(prow.compared_with or "-")]
        for value, delta in zip(prow.values, prow.deltas, strict=True):
            cells += [format_number(value), format_delta(delta)]
        rows.append(cells)
    return _table_lines([md_escape(h) for h in header], rows)


def _explain(table: Table) -> list[str]:
    lines = ["", "**Explanation**", ""]
    for block in table.blocks:
        for row in block.rows:
            for group, reasons in row.explain.items():
                text = "; ".join(reasons)
                lines.append(f"- {md_escape(block.title)} / {md_escape(row.label)} / {group}: {md_escape(text)}")
    lines += [f"- {md_escape(note)}" for note in table.notes]
    return lines


RATE_HEADERS = (("mixed_share", "mixed"), ("text_changed_share", "text changed"), ("pseudo_fg", "pseudo fg"))


def _wall(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _stats(stats: SeedStats | None) -> str:
    if stats is None:
        return "-"
    spread = "" if stats.std is None else f" ± {stats.std:.2f}"
    return f"{stats.mean:.2f}{spread} (n={stats.n})"


def format_test(result: Significance | PairedTest | None) -> str:
    """A paired test as the details show it: difference in pp, its 95% bootstrap CI, p and n."""
    if result is None:
        return "-"
    return (f"{result.mean_difference:+.2f} pp [{result.ci_low:+.2f}, {result.ci_high:+.2f}], "
            f"p={result.p_value:.3g}, n={result.n_images}")


def _vs_burnin(run: RunDetail) -> str:
    test = run.vs_burnin
    return "-" if test is None else f"{test.baseline.removeprefix('burn-in ')}: {format_test(test)}"


def _run_line(label: str, run: RunDetail) -> list[str]:
    return [md_escape(label), str(run.seed), str(run.run_id), _wall(run.wall_s), format_number(run.dice_global),
            format_number(run.dice_per_image), md_escape(format_test(run.vs_baseline)), md_escape(_vs_burnin(run)),
            *(_share(run.rates.get(name)) for name, _ in RATE_HEADERS)]


def _details(detail: BlockDetail) -> list[str]:
    header = ["Row", "seed", "run", "wall", "Dice global", "Dice per image", "vs baseline (same seed)",
              "vs its burn-in",
              *(h for _, h in RATE_HEADERS)]
    runs = [_run_line(row.label, run) for row in [*detail.rows, *detail.full] for run in row.runs]
    lines = [f"**Runs: {md_escape(detail.title)}**", "", *_table_lines(header, runs), ""]
    steps = [[md_escape(row.label), md_escape(row.vs_previous.baseline), md_escape(format_test(row.vs_previous))]
             for row in detail.rows if row.vs_previous is not None]
    if steps:
        lines += [(f"**Row by row: {md_escape(detail.title)}** (per-image Dice averaged over seeds, paired by image, "
                  "Wilcoxon)"), "", *_table_lines(["Row", "vs row", "difference"], steps), ""]
    gaps = [[md_escape(row.label), _share(row.gap_share.get("global")), _share(row.gap_share.get("per-image"))]
            for row in detail.rows if row.gap_share]
    if gaps:
        lines += [(f"**Share of the gap to 100% supervision closed: {md_escape(detail.title)}** "
                  "((row - Baseline) / (100% supervised - Baseline), means over seeds)"), "",
                  *_table_lines(["Row", "global", "per image"], gaps), ""]
        if detail.gap_ends:
            ends = "; ".join(f"{md_escape(end.label)} {_stats(end.dice.get('global'))} / "
                             f"{_stats(end.dice.get('per-image'))}" for end in detail.gap_ends)
            lines += [f"Ends of the gap (test Dice, mean ± std over seeds, global / per image): {ends}.", ""]
    return lines


def render_table(table: Table) -> str:
    lines = [f"### {md_escape(table.title)}", ""]
    for block in table.blocks:
        lines += [f"**{md_escape(block.title)}**", "", *_measured(table, block), ""]
    lines.append(f"_{md_escape(table.caption)}_")
    if table.with_paper:
        lines += ["", "#### Paper (reference)", ""]
        shown = [b for b in table.blocks if b.paper_rows]
        for block in shown:
            lines += [f"**{md_escape(block.title)}**", "", *_paper(table, block), ""]
        if not shown:
            lines += ["No paper numbers for the data sets and backbones shown.", ""]
        lines.append(f"_{md_escape(table.paper_caption)}_")
    if table.details is not None:
        lines += ["", f"#### Runs behind {md_escape(table.title)}", ""]
        for detail in table.details:
            lines += _details(detail)
    if table.explain:
        lines += _explain(table)
    return "\n".join(lines) + "\n"


def render(tables: list[Table]) -> str:
    return "\n".join(render_table(t) for t in tables)
