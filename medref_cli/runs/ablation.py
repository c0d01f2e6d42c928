"""The paper's ablation grids as cells, and the state of each cell in the ledger.

A cell is one (row, label ratio, seed): the row's experiment file (`experiments/ablations/`,
holding only its differences from the base) layered on the user's --config, with the seed used
for both the split and the training. Its identity is what its run will record: the kind
(`burnin` for a supervised row, `train` otherwise), the config hash (for a burn-in, of the
SSL-independent burn-in config), the split hash and the data hash. Every (ratio, seed) group
gets one burn-in cell, shared by all its rows. Table 2's Baseline row is NOT that burn-in: it is
the step-matched supervised control (train.step_matched), as many optimizer steps as the
semi-supervised rows.

States: done (a finished run with this identity and the current code version), stale (finished,
but by other code), failed (the newest attempt failed, was killed or was lost), running,
pending (never run), no-files (a done shared burn-in whose checkpoint file is gone while a
semi-supervised cell of its group has yet to run: trained again first).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medref_cli.config import ExperimentConfig, config_hash, load_config
from medref_cli.config.loader import EXTENDS_KEY, _flatten
from medref_cli.errors import MedrefError


@dataclass(frozen=True)
class Row:
    name: str
    file: str  # relative to the ablations folder
    kind: str  # burnin | train


@dataclass(frozen=True)
class Grid:
    rows: tuple[Row, ...]
    ratios: tuple[float, ...]


TABLES: dict[int, Grid] = {
    2: Grid(
        (
            Row("Baseline", "table2/baseline.yaml", "burnin"),
            Row("+ T-S EMA", "table2/ema.yaml", "train"),
            Row("+ PosAug", "table2/posaug.yaml", "train"),
            Row("+ T-PatchMix", "table2/tpatchmix.yaml", "train"),
            Row("+ ITCL (Ours)", "table2/itcl.yaml", "train"),
        ),
        (0.01, 0.02),
    ),
    3: Grid(
        (
            Row("Baseline", "table3/baseline.yaml", "train"),
            Row("TextStrong", "table3/textstrong.yaml", "train"),
            Row("w/ CutMix", "table3/cutmix.yaml", "train"),
            Row("w/ SPC", "table3/spc.yaml", "train"),
            Row("Ours-V1", "table3/ours-v1.yaml", "train"),
            Row("Ours-V2", "table3/ours-v2.yaml", "train"),
            Row("Ours-V3", "table3/ours-v3.yaml", "train"),
            Row("Ours-All", "table3/ours-all.yaml", "train"),
        ),
        (0.01,),
    ),
}
BURNIN_ROW = "(burn-in)"


@dataclass
class Cell:
    row: str
    kind: str
    ratio: float
    seed: int
    cfg: ExperimentConfig
    config_hash: str = ""
    split_hash: str = ""
    data_hash: str = ""
    state: str = "pending"
    run_id: int | None = None

    @property
    def group(self) -> tuple[float, int]:
        return (self.ratio, self.seed)

    @property
    def label(self) -> str:
        return f"{self.row} @ {self.ratio:g} seed {self.seed}"

    @property
    def slug(self) -> str:
        keep = "".join(c if c.isalnum() else "-" for c in self.row.lower()).strip("-") or "burnin"
        return f"{keep}-r{self.ratio:g}-s{self.seed}"


def ablations_dir(explicit: Path | None = None) -> Path:
    """--grid-dir, else ./experiments/ablations, else the one beside the installed sources."""
    from medref_cli.ledger.provenance import SOURCE_ROOT

    for candidate in (explicit, Path("experiments/ablations"), SOURCE_ROOT / "experiments" / "ablations"):
        if candidate is not None and candidate.is_dir():
            return candidate
    raise MedrefError("ablation experiment files not found; pass --grid-dir DIR (experiments/ablations)")


def row_overrides(path: Path) -> dict[str, Any]:
    """The row file's own keys (its differences), without the chain it extends."""
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MedrefError(f"cannot read ablation file {path}: {exc}") from None
    tree.pop(EXTENDS_KEY, None)
    return _flatten(tree, str(path))


def build_cells(
    table: int,
    config: Path | None,
    sets: list[str],
    overrides: dict[str, Any],
    ratios: list[float] | None,
    seeds: list[int],
    grid_dir: Path | None = None,
    rows: list[str] | None = None,
) -> list[Cell]:
    """All cells of a table (or of the `rows` named, by row file stem), plus one shared burn-in cell
    per (ratio, seed) group that lacks one. A subset's cells are the full grid's cells: the same
    configs, so the same ledger identities (the burn-in is built from the table's first
    semi-supervised row either way)."""
    if table not in TABLES:
        raise MedrefError(f"--table must be one of {', '.join(map(str, TABLES))}, got {table}")
    if not seeds:
        raise MedrefError("--seeds needs at least one seed")
    grid, folder = TABLES[table], ablations_dir(grid_dir)
    chosen = _chosen_rows(table, grid, rows)
    cells: list[Cell] = []
    for ratio in ratios or grid.ratios:
        for seed in seeds:
            group: list[Cell] = []
            for row in grid.rows:
                layered = {**row_overrides(folder / row.file), **overrides,
                           "split.ratio": ratio, "split.seed": seed, "train.seed": seed}
                group.append(Cell(row.name, row.kind, ratio, seed, load_config(config, layered, sets)))
            if not any(c.kind == "burnin" and not c.cfg.train.step_matched for c in group):
                base = next((c.cfg for c in group if c.kind == "train"), group[0].cfg)
                plain = dataclasses.replace(base, name="burn-in",
                                            train=dataclasses.replace(base.train, step_matched=False))
                group.insert(0, Cell(BURNIN_ROW, "burnin", ratio, seed, plain))
            cells.extend(c for c in group if c.row in chosen)
    return cells


def row_key(row: Row) -> str:
    """The name --rows gives a row: its file's stem (table2/itcl.yaml -> itcl)."""
    return Path(row.file).stem


def _chosen_rows(table: int, grid: Grid, rows: list[str] | None) -> set[str]:
    """The row names to keep; the shared burn-in stays whenever a semi-supervised row is kept."""
    if rows is None:
        return {row.name for row in grid.rows} | {BURNIN_ROW}
    by_key = {row_key(row): row for row in grid.rows}
    if not rows:
        raise MedrefError(f"--rows names no row (table {table}: {', '.join(by_key)})")
    unknown = [r for r in rows if r not in by_key]
    if unknown:
        raise MedrefError(f"--rows: table {table} has no row '{unknown[0]}' (rows: {', '.join(by_key)})")
    kept = {by_key[r].name for r in rows}
    if any(by_key[r].kind == "train" for r in rows):
        kept.add(BURNIN_ROW)
    return kept


def recorded_hash(cell: Cell) -> str:
    from medref_cli.runs.burnin_run import supervised_config

    return config_hash(supervised_config(cell.cfg) if cell.kind == "burnin" else cell.cfg)


def identify(cells: list[Cell]) -> None:
    """Fill in each cell's config, split and data hashes (split manifests computed, not written)."""
    from medref_cli.data.split_run import expected_manifest, identify_data, train_ids

    data_cache: dict[tuple, Any] = {}
    ids_cache: dict[tuple, list[str]] = {}
    for cell in cells:
        key = (cell.cfg.data, cell.cfg.runtime.results_dir)
        if key not in data_cache:
            data_cache[key] = identify_data(cell.cfg)
            ids_cache[key] = train_ids(cell.cfg, data_cache[key].ref)
        data = data_cache[key]
        manifest = expected_manifest(cell.cfg, data, ids_cache[key])
        cell.config_hash, cell.split_hash, cell.data_hash = recorded_hash(cell), manifest.sha256, data.tree.digest


def assess(ledger_url: str, cells: list[Cell]) -> None:
    """Set each cell's state and the run that decides it, from the ledger (read only)."""
    from sqlalchemy import select

    from medref_cli.ledger import effective_status, open_ledger
    from medref_cli.ledger.db import sqlite_file_missing
    from medref_cli.ledger.provenance import code_version
    from medref_cli.ledger.schema import Run

    if sqlite_file_missing(ledger_url):
        return  # no ledger yet: everything is pending
    current = code_version().label
    ledger = open_ledger(ledger_url, create=False)
    try:
        with ledger.read() as session:
            for cell in cells:
                runs = list(session.scalars(
                    select(Run).where(Run.kind == cell.kind, Run.config_hash == cell.config_hash,
                                      Run.split_hash == cell.split_hash, Run.data_hash == cell.data_hash)
                    .order_by(Run.id)))
                cell.state, cell.run_id = _state(runs, current, effective_status)
        _check_burnin_files(ledger, cells)
    finally:
        ledger.dispose()


def _check_burnin_files(ledger, cells: list[Cell]) -> None:
    """A done shared burn-in whose checkpoint file is gone (a ledger restored on another machine)
    while a semi-supervised cell of its group still has to run: state `no-files`, so that it is
    trained again first (its SSL cells start from that checkpoint)."""
    from medref_cli.evaluation.evaluate_run import checkpoint_of_run

    for burnin in cells:
        if burnin.row != BURNIN_ROW or burnin.state != "done" or burnin.run_id is None:
            continue
        waiting = [c for c in cells if c.kind == "train" and c.group == burnin.group and c.state != "done"]
        if waiting and not checkpoint_of_run(ledger, burnin.run_id)[0].is_file():
            burnin.state = "no-files"


def _state(runs: list, current: str, status_of) -> tuple[str, int | None]:
    finished = [r for r in runs if r.status == "finished"]
    fresh = [r for r in finished if r.code_version == current]
    if fresh:
        return "done", fresh[-1].id
    if finished:
        return "stale", finished[-1].id
    if runs:
        status = status_of(runs[-1])
        return ("running" if status == "running" else "failed"), runs[-1].id
    return "pending", None
