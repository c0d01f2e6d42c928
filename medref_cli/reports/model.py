"""The report's data model, shared by every renderer: tables of blocks of rows of cells.

Measured rows and paper rows live in separate lists, so no renderer can mix them. Values are
percentages (the ledger stores fractions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# dice_image and recovery: the text-reliance table's per-image Dice and ISPG recovery share (percent)
METRIC_LABELS = {"dice": "Dice", "miou": "mIoU", "dice_image": "Dice/img", "recovery": "recovery %"}
STALE_MARK = "\u2020"  # dagger
MISSING = "-"


@dataclass(frozen=True)
class Column:
    group: str  # label ratio, e.g. "1%"
    ratio: float
    metric: str  # dice | miou

    @property
    def label(self) -> str:
        return f"{self.group} {METRIC_LABELS[self.metric]}"


@dataclass(frozen=True)
class Significance:
    """A paired test of this cell's per-image test Dice against its baseline row's."""

    baseline: str  # label of the baseline row
    n_images: int
    mean_difference: float  # percentage points, method - baseline
    ci_low: float
    ci_high: float
    p_value: float
    marker: str


@dataclass(frozen=True)
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    stale: bool = False
    significance: Significance | None = None
    run_ids: tuple[int, ...] = ()
    stale_reasons: tuple[str, ...] = ()  # "run 7: other code version", ...

    @property
    def missing(self) -> bool:
        return self.mean is None

    @property
    def marker(self) -> str:
        return self.significance.marker if self.significance else ""


@dataclass
class Row:
    label: str
    checks: tuple[bool, ...]
    cells: list[Cell]
    # column group (e.g. "1%") -> why the cell shows what it shows
    explain: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PaperRow:
    label: str
    values: list[float | None]
    # ours - paper for the row named by `compared_with`; None where either side is missing
    deltas: list[float | None]
    compared_with: str | None = None


@dataclass
class Block:
    title: str
    rows: list[Row]
    paper_rows: list[PaperRow] = field(default_factory=list)


@dataclass(frozen=True)
class RunDetail:
    """One counted run of a cell: its cost, its scores, its logged rates, its test against the baseline."""

    run_id: int
    seed: int | None
    wall_s: float | None  # started to ended, as recorded
    dice_global: float | None  # percent
    dice_per_image: float | None
    # step-weighted mean over the run's logged windows; None where the run logged none (supervised runs)
    rates: dict[str, float | None]
    vs_baseline: Significance | None = None  # against the baseline row's run of the same seed
    # a semi-supervised run against the burn-in it started from (its parent run): what its SSL phase
    # added, free of the burn-in's own run-to-run noise; None for runs without a scored parent burn-in
    vs_burnin: Significance | None = None


@dataclass(frozen=True)
class RowDetail:
    label: str
    runs: list[RunDetail]
    vs_previous: Significance | None = None  # seed-averaged per image, against the row above
    # definition (global | per-image) -> (row - Baseline) / (100% supervised - Baseline); None where a side is missing
    gap_share: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedStats:
    """Mean and sample standard deviation (ddof = 1) over seeds; std is None when n < 2."""

    mean: float
    std: float | None
    n: int


@dataclass(frozen=True)
class GapEnd:
    """One end of a gap share: a baseline row or a 100% supervised row, its test Dice over seeds."""

    label: str
    dice: dict[str, SeedStats | None]  # definition (global | per-image) -> mean and std over seeds, in percent


@dataclass(frozen=True)
class BlockDetail:
    title: str  # the block's title and the ratio column, e.g. "QaTa-COV19, MMI-UNet, 5%"
    rows: list[RowDetail]
    full: list[RowDetail] = field(default_factory=list)  # the 100% supervised runs the gap share is measured to
    gap_ends: list[GapEnd] = field(default_factory=list)  # the rows the gap shares are measured between


@dataclass
class Table:
    key: str  # table1 | table2 | table3
    title: str
    caption: str
    columns: list[Column]
    check_columns: tuple[str, ...]
    blocks: list[Block]
    paper_caption: str = ""
    notes: list[str] = field(default_factory=list)  # table-wide explanations (--explain)
    with_paper: bool = False
    explain: bool = False
    definition: str = "global"
    details: list[BlockDetail] | None = None  # --details: the runs behind each cell


def format_number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def format_delta(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.2f}"


@dataclass(frozen=True)
class CellText:
    """A cell's parts; renderers join them in their own syntax."""

    mean: str
    std: str | None
    n: str
    marker: str
    stale: bool


def cell_parts(cell: Cell) -> CellText | None:
    """None for a missing cell (rendered as a dash)."""
    if cell.missing:
        return None
    std = None if cell.std is None else f"{cell.std:.2f}"
    return CellText(f"{cell.mean:.2f}", std, f"n={cell.n}", cell.marker, cell.stale)


def plain_cell_text(cell: Cell) -> str:
    """`86.39 ± 0.21 (n=3)**†`: the form markdown and CSV show."""
    parts = cell_parts(cell)
    if parts is None:
        return MISSING
    text = parts.mean if parts.std is None else f"{parts.mean} \u00b1 {parts.std}"
    return f"{text} ({parts.n}){parts.marker}{STALE_MARK if parts.stale else ''}"
