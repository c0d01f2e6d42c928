"""Build Tables 1-3 from the ledger: blocks of rows, cells over seeds, significance, paper rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from medref_cli.errors import MedrefError
from medref_cli.ledger.db import Ledger
from medref_cli.ledger.report_queries import RunRecord, image_scores, table_runs
from medref_cli.reports import layouts
from medref_cli.reports.captions import TITLES, paper_caption, table_caption
from medref_cli.reports.cells import RunView, Selection, select_runs, view_run
from medref_cli.reports.details import DetailSource, block_details, full_supervision
from medref_cli.reports.identity import ConfigCondition
from medref_cli.reports.layouts import FINAL_NAMES, RowSpec, ratio_label, same_ratio
from medref_cli.reports.model import Block, Cell, Column, PaperRow, Row, Significance, Table
from medref_cli.reports.paper import (
    PaperReference,
    backbone_title,
    dataset_title,
    table1_references,
    table2_references,
    table3_references,
)
from medref_cli.reports.staleness import CurrentVersions, current_versions
from medref_cli.reports.stats import average_over_seeds, seed_stats, significance

DEFINITIONS = ("global", "per-image")
METRICS = ("dice", "miou")
DATASET_ORDER = ("qata", "mosmed")
BACKBONE_ORDER = ("guidedecoder", "mmi-unet")
MAX_LISTED_RUNS = 20


@dataclass(frozen=True)
class ReportOptions:
    tables: tuple[int, ...] = (1, 2, 3)
    datasets: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    metrics: tuple[str, ...] | None = None  # None: each table's default (Table 3: Dice only)
    definition: str = "global"
    with_paper: bool = False
    explain: bool = False
    where: tuple[ConfigCondition, ...] = ()
    details: bool = False  # the runs behind each cell (reports.details)
    ratios: tuple[float, ...] = ()  # label-ratio columns; () = each table's paper ratios
    code: str = ""  # full code-version label: count only the runs that code made ("" = every run)

    def __post_init__(self) -> None:
        if self.definition not in DEFINITIONS:
            raise MedrefError(f"--definition must be one of {', '.join(DEFINITIONS)}, got '{self.definition}'")
        bad = [m for m in self.metrics or () if m not in METRICS]
        if bad or self.metrics == ():
            raise MedrefError(f"--metric expects a comma list of {', '.join(METRICS)}, got '{','.join(bad)}'")
        bad_tables = [t for t in self.tables if t not in (1, 2, 3)]
        if bad_tables or not self.tables:
            raise MedrefError("--table must be 1, 2, 3 or all")
        bad_ratios = [r for r in self.ratios if not 0.0 < r <= 1.0]
        if bad_ratios:
            raise MedrefError(f"--ratio must lie in (0, 1], got {bad_ratios[0]:g}")


class ScoreCache:
    """Per-image test Dice (percent) of runs, fetched from the ledger once per run."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._dice: dict[int, dict[str, float]] = {}

    def dice(self, runs: Sequence[RunRecord]) -> list[dict[str, float]]:
        return self.dice_of([r.id for r in runs])

    def dice_of(self, run_ids: Sequence[int]) -> list[dict[str, float]]:
        """Per-image test Dice of each run id ({} for a run that recorded none)."""
        missing = [i for i in run_ids if i not in self._dice]
        found = image_scores(self.ledger, missing, split="test")
        for run_id in missing:
            self._dice[run_id] = {sid: dice * 100.0 for sid, (dice, _iou) in found.get(run_id, {}).items()}
        return [self._dice[i] for i in run_ids]


@dataclass(frozen=True)
class Context:
    views: list[RunView]
    options: ReportOptions
    current: CurrentVersions
    scores: ScoreCache


def _ordered(names: set[str], preferred: Sequence[str]) -> list[str]:
    return [n for n in preferred if n in names] + sorted(n for n in names if n not in preferred)


def _present(views: Sequence[RunView], kinds: Sequence[str], ratios: Sequence[float], dataset: str | None = None,
             field: str = "dataset") -> set[str]:
    return {
        getattr(v.run, field) for v in views
        if v.run.kind in kinds and getattr(v.run, field) is not None
        and any(same_ratio(v.run.label_ratio, r) for r in ratios)
        and (dataset is None or v.run.dataset == dataset)
    }


def _significance(method: list[RunRecord], baseline: list[RunRecord], spec: RowSpec,
                  scores: ScoreCache) -> tuple[Significance | None, str | None]:
    if not method:
        return None, None
    if not baseline:
        return None, f"vs {spec.baseline}: not tested (no finished {spec.baseline} run)"
    ours, theirs = average_over_seeds(scores.dice(method)), average_over_seeds(scores.dice(baseline))
    if not ours or not theirs:
        return None, f"vs {spec.baseline}: not tested (no per-image test scores on one side)"
    sig = significance(ours, theirs, spec.baseline)
    if sig is None:
        return None, f"vs {spec.baseline}: not tested (fewer than 2 test images in common)"
    line = (f"vs {spec.baseline}: Wilcoxon p={sig.p_value:.3g} on {sig.n_images} paired test images, mean Dice "
            f"difference {sig.mean_difference:+.2f} pp (95% bootstrap CI {sig.ci_low:+.2f} to {sig.ci_high:+.2f})")
    return sig, line


def _row(spec: RowSpec, columns: list[Column], selections: dict[tuple[str, float], Selection],
         ctx: Context) -> Row:
    row = Row(spec.label, spec.checks, [])
    sigs: dict[float, Significance | None] = {}
    for ratio in sorted({c.ratio for c in columns}):
        sel = selections[(spec.label, ratio)]
        lines = list(sel.explain)
        if spec.baseline is not None and any(c.metric == "dice" for c in columns):
            sig, line = _significance(sel.counted, selections[(spec.baseline, ratio)].counted, spec, ctx.scores)
            sigs[ratio] = sig
            if line:
                lines.append(line)
        row.explain[ratio_label(ratio)] = lines
    for col in columns:
        sel = selections[(spec.label, col.ratio)]
        if not sel.counted:
            row.cells.append(Cell())
            continue
        name = FINAL_NAMES[(ctx.options.definition, col.metric)]
        stats = seed_stats([r.finals[name] * 100.0 for r in sel.counted])
        stale = tuple(f"run {run_id}: {', '.join(why)}" for run_id, why in sel.stale.items())
        row.cells.append(Cell(stats.mean, stats.std, stats.n, bool(stale),
                              sigs.get(col.ratio) if col.metric == "dice" else None,
                              tuple(r.id for r in sel.counted), stale))
    return row


def _paper_rows(refs: list[PaperReference], rows: list[Row], columns: list[Column], definition: str) -> list[PaperRow]:
    ours = {r.label: r for r in rows}
    out = []
    for ref in refs:
        values = [ref.values.get((c.group, c.metric)) for c in columns]
        mine = ours.get(ref.compared_with) if definition == "global" else None
        cells = mine.cells if mine else [Cell()] * len(values)
        deltas = [None if v is None or c.mean is None else c.mean - v for v, c in zip(values, cells, strict=True)]
        out.append(PaperRow(ref.label, values, deltas, mine.label if mine else None))
    return out


def _block(title: str, dataset: str, specs: list[RowSpec], columns: list[Column], refs: list[PaperReference],
           ctx: Context) -> tuple[Block, set[int], dict[tuple[str, float], Selection]]:
    needed = sorted({FINAL_NAMES[(ctx.options.definition, c.metric)] for c in columns})
    selections: dict[tuple[str, float], Selection] = {}
    placed: set[int] = set()
    for spec in specs:
        for ratio in sorted({c.ratio for c in columns}):
            cands = [v for v in ctx.views if v.run.dataset == dataset and same_ratio(v.run.label_ratio, ratio)
                     and spec.takes(v.run.kind, v.run.backbone, v.components, v.step_matched)]
            placed |= {v.run.id for v in cands}
            selections[(spec.label, ratio)] = select_runs(cands, needed, ctx.current)
    rows = [_row(spec, columns, selections, ctx) for spec in specs]
    paper_rows = _paper_rows(refs, rows, columns, ctx.options.definition) if ctx.options.with_paper else []
    return Block(title, rows, paper_rows), placed, selections


def _columns(ratios: Sequence[float], metrics: Sequence[str]) -> list[Column]:
    return [Column(ratio_label(r), r, m) for r in ratios for m in metrics]


def _unplaced_notes(scope: list[RunView], placed: set[int], ratios: Sequence[float]) -> list[str]:
    reasons: dict[str, list[int]] = {}
    for v in scope:
        if v.run.id in placed:
            continue
        if not any(same_ratio(v.run.label_ratio, r) for r in ratios):
            why = "label ratio not a column of this table"
        elif v.run.kind == "burnin" and not v.step_matched:
            why = "burn-in phases; the supervised rows show step-matched supervised runs"
        else:
            why = "SSL components match no row of this table"
        reasons.setdefault(why, []).append(v.run.id)
    notes = []
    for why, ids in sorted(reasons.items()):
        listed = ", ".join(map(str, ids[:MAX_LISTED_RUNS]))
        more = f" and {len(ids) - MAX_LISTED_RUNS} more" if len(ids) > MAX_LISTED_RUNS else ""
        notes.append(f"not shown: run{'s' if len(ids) > 1 else ''} {listed}{more} ({why})")
    return notes


BlockPlan = tuple[str, str, str, list[RowSpec], list[PaperReference]]  # title, dataset, backbone, rows, refs


def table_ratios(number: int, options: ReportOptions) -> tuple[float, ...]:
    """The label-ratio columns of a table: --ratio where given, else the paper's."""
    paper = {1: layouts.TABLE1_RATIOS, 2: layouts.TABLE2_RATIOS, 3: layouts.TABLE3_RATIOS}[number]
    return tuple(sorted(set(options.ratios))) if options.ratios else paper


def _table1_plan(ctx: Context) -> list[BlockPlan]:
    opts, kinds, ratios = ctx.options, ("burnin", "train"), table_ratios(1, ctx.options)
    datasets = list(opts.datasets) or _ordered(_present(ctx.views, kinds, ratios), DATASET_ORDER) or ["qata"]
    plan = []
    for d in datasets:
        present = _ordered(_present(ctx.views, kinds, ratios, d, "backbone"), BACKBONE_ORDER)
        backbones = list(opts.backbones) or present or list(BACKBONE_ORDER)
        plan.append((dataset_title(d), d, "*", layouts.table1_rows(backbones), table1_references(d, backbones)))
    return plan


def _ablation_plan(ctx: Context, kinds: Sequence[str], ratios: Sequence[float],
                   rows: Callable[[str], list[RowSpec]],
                   refs: Callable[[str, str], list[PaperReference]]) -> list[BlockPlan]:
    opts = ctx.options
    datasets = list(opts.datasets) or _ordered(_present(ctx.views, kinds, ratios), DATASET_ORDER) or ["qata"]
    plan = []
    for d in datasets:
        present = _ordered(_present(ctx.views, kinds, ratios, d, "backbone"), ("mmi-unet", "guidedecoder"))
        for b in list(opts.backbones) or present or ["mmi-unet"]:
            plan.append((f"{dataset_title(d)}, {backbone_title(b)}", d, b, rows(b), refs(d, b)))
    return plan


def build_table(number: int, ctx: Context) -> Table:
    key = f"table{number}"
    ratios = table_ratios(number, ctx.options)
    metrics = ctx.options.metrics or layouts.DEFAULT_METRICS[key]
    if number == 1:
        plan = _table1_plan(ctx)
    elif number == 2:
        plan = _ablation_plan(ctx, ("burnin", "train"), ratios, layouts.table2_rows, table2_references)
    else:
        plan = _ablation_plan(ctx, ("train",), ratios, layouts.table3_rows, table3_references)
    columns = _columns(ratios, metrics)
    blocks, placed, details = [], set(), []
    source = DetailSource(ctx.scores.ledger, ctx.scores)
    for title, dataset, _backbone, specs, refs in plan:
        block, ids, selections = _block(title, dataset, specs, columns, refs, ctx)
        blocks.append(block)
        placed |= ids
        if ctx.options.details:
            counted = {key: sel.counted for key, sel in selections.items()}
            full = full_supervision(ctx.views, dataset, sorted({s.backbone for s in specs}), ctx.current)
            details += block_details(title, specs, columns, counted, full, source)
    kinds = {s.kind for _t, _d, _b, specs, _r in plan for s in specs}
    scope = [v for v in ctx.views if v.run.kind in kinds
             and any(v.run.dataset == d and b in ("*", v.run.backbone) for _t, d, b, _s, _r in plan)]
    return Table(
        key=key,
        title=TITLES[key],
        caption=table_caption(key, ctx.options.definition, with_significance="dice" in metrics),
        columns=columns,
        check_columns={1: (), 2: layouts.TABLE2_CHECKS, 3: layouts.TABLE3_CHECKS}[number],
        blocks=blocks,
        paper_caption=paper_caption(key, ctx.options.definition) if ctx.options.with_paper else "",
        notes=_unplaced_notes(scope, placed, ratios),
        with_paper=ctx.options.with_paper,
        explain=ctx.options.explain,
        definition=ctx.options.definition,
        details=details if ctx.options.details else None,
    )


def build_report(ledger: Ledger, options: ReportOptions, current: CurrentVersions | None = None,
                 now: datetime | None = None) -> list[Table]:
    """The requested tables, built only from ledger queries."""
    runs = table_runs(ledger, datasets=options.datasets or None, backbones=options.backbones or None, now=now)
    runs = [r for r in runs if all(cond.holds(r.config) for cond in options.where)
            and (not options.code or r.code_version == options.code)]
    ctx = Context([view_run(r) for r in runs], options, current or current_versions(ledger), ScoreCache(ledger))
    return [build_table(n, ctx) for n in options.tables]
