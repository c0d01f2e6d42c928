"""Table 2's grid: its Baseline is the step-matched supervised control, apart from the shared burn-in."""

from __future__ import annotations

from pathlib import Path

from medref_cli.runs.ablation import BURNIN_ROW, build_cells, recorded_hash

GRID = Path(__file__).resolve().parents[2] / "experiments" / "ablations"


def test_table2_baseline_is_step_matched_and_the_burnin_is_shared_apart():
    cells = build_cells(2, None, [], {}, [0.01], [0], grid_dir=GRID)
    by_row = {c.row: c for c in cells}
    assert by_row["Baseline"].kind == "burnin" and by_row["Baseline"].cfg.train.step_matched
    assert by_row[BURNIN_ROW].kind == "burnin" and not by_row[BURNIN_ROW].cfg.train.step_matched
    assert recorded_hash(by_row["Baseline"]) != recorded_hash(by_row[BURNIN_ROW])
    # the semi-supervised rows all share that one burn-in
    from medref_cli.config import config_hash
    from medref_cli.runs.burnin_run import burnin_config

    ssl_rows = [c for c in cells if c.kind == "train"]
    assert {config_hash(burnin_config(c.cfg)) for c in ssl_rows} == {recorded_hash(by_row[BURNIN_ROW])}


def test_rows_pick_the_full_grids_cells_and_keep_the_burnin_for_a_semi_supervised_row():
    full = {(c.row, c.seed): recorded_hash(c) for c in build_cells(2, None, [], {}, [0.05], [0, 1], grid_dir=GRID)}
    picked = build_cells(2, None, [], {}, [0.05], [0, 1], grid_dir=GRID, rows=["itcl", "baseline"])
    assert sorted({c.row for c in picked}) == sorted({BURNIN_ROW, "Baseline", "+ ITCL (Ours)"})
    assert len(picked) == 6
    # the same configs as in the full grid, so the ledger sees the same cells
    assert {(c.row, c.seed): recorded_hash(c) for c in picked}.items() <= full.items()
    # a supervised row alone needs no shared burn-in
    alone = build_cells(2, None, [], {}, [0.05], [0], grid_dir=GRID, rows=["baseline"])
    assert [c.row for c in alone] == ["Baseline"]


def test_an_unknown_or_empty_row_list_names_the_rows():
    import pytest

    from medref_cli.errors import MedrefError

    with pytest.raises(MedrefError, match=r"--rows: table 2 has no row 'ours' \(rows: baseline, ema, posaug, "
                                          r"tpatchmix, itcl\)"):
        build_cells(2, None, [], {}, [0.05], [0], grid_dir=GRID, rows=["itcl", "ours"])
    with pytest.raises(MedrefError, match="--rows names no row"):
        build_cells(2, None, [], {}, [0.05], [0], grid_dir=GRID, rows=[])


def test_a_burnin_keeps_the_weak_views_shift():
    """The shift changes what a burn-in trains on, so burn-ins that differ in it are different runs."""
    import dataclasses

    from medref_cli.config import ExperimentConfig, config_hash
    from medref_cli.runs.burnin_run import burnin_config

    cfg = ExperimentConfig()
    moved = dataclasses.replace(cfg, ssl=dataclasses.replace(cfg.ssl, shift=0.08))
    assert burnin_config(moved).ssl.shift == 0.08
    assert config_hash(burnin_config(moved)) != config_hash(burnin_config(cfg))
