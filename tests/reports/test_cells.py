"""Which runs a cell counts, and the explanation of every run it leaves out."""

from __future__ import annotations

import dataclasses

import pytest

from medref_cli.config import load_config, to_dict
from medref_cli.ledger.report_queries import RunRecord
from medref_cli.reports.cells import select_runs, view_run
from medref_cli.reports.staleness import CurrentVersions

CURRENT = CurrentVersions("code-now", "schema-now", {"qata": "data-new"})
NEEDED = ["test_dice_global"]
FINALS = {"test_dice_global": 0.8}


def run(run_id: int, seed: int = 1, status: str = "finished", finals: dict | None = None, sets: tuple = (),
        **changes) -> RunRecord:
    cfg = to_dict(load_config(sets=[f"train.seed={seed}", *sets]))
    record = RunRecord(id=run_id, kind="train", parent_id=None, status=status, dataset="qata", backbone="mmi-unet",
                       label_ratio=0.05, seed=seed, config=cfg, config_hash="h", config_schema="schema-now",
                       code_version="code-now", data_hash="data-new", split_hash="s", error=None,
                       finals=FINALS if finals is None else finals)
    return dataclasses.replace(record, **changes)


def select(*runs: RunRecord):
    return select_runs([view_run(r) for r in runs], NEEDED, CURRENT)


def explained(sel) -> list[str]:
    return [line.split(", config group")[0] for line in sel.explain]


@pytest.mark.parametrize(
    ("runs", "counted", "lines"),
    [
        ((), [], ["never run"]),
        ((run(1, status="failed"), run(2, status="killed")), [], ["no finished run", "failed: run 1", "killed: run 2"]),
        ((run(3, status="running"),), [], ["no finished run", "still running: run 3"]),
        ((run(4, status="lost"), run(5, seed=2, status="lost")), [],
         ["no finished run", "lost (its heartbeat stopped): runs 4, 5"]),
        ((run(6, finals={}),), [], ["no finished run", "run 6 finished without test_dice_global"]),
        ((run(7), run(8, seed=2, status="failed")), [7], ["n=1: run 7 (seed 1)", "failed: run 8"]),
        ((run(9), run(10, seed=2), run(11, seed=3)), [9, 10, 11], ["n=3: runs 9, 10, 11 (seeds 1, 2, 3)"]),
        ((run(12), run(13)), [13], ["n=1: run 13 (seed 1)", "run 12 superseded by run 13 (same seed 1)"]),
    ],
)
def test_cell_selection(runs, counted, lines):
    sel = select(*runs)
    assert [r.id for r in sel.counted] == counted
    assert explained(sel) == lines


def test_config_groups_are_never_averaged_the_newest_is_shown():
    old = [run(1, seed=1, sets=("train.epochs=20",)), run(2, seed=2, sets=("train.epochs=20",))]
    new = [run(3, seed=1, sets=("train.epochs=40",))]
    sel = select(*old, *new)
    assert [r.id for r in sel.counted] == [3]
    assert sel.explain[-1].startswith("not averaged in: config group ")
    assert sel.explain[-1].endswith("(runs 1, 2) differs in train.epochs=20 (shown: 40)")


def test_stale_runs_count_but_are_named():
    sel = select(run(1), run(2, seed=2, code_version="code-then"), run(3, seed=3, data_hash="data-old"))
    assert [r.id for r in sel.counted] == [1, 2, 3]
    assert sel.stale == {2: ["other code version"], 3: ["older data hash"]}
    assert sel.explain[-2:] == ["stale: run 2 (other code version)", "stale: run 3 (older data hash)"]
