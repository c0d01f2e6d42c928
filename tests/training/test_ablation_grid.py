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
