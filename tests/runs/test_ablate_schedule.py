"""The order in which `medref ablate` starts a grid's cells: shared burn-ins first, and each
semi-supervised cell as soon as its own (ratio, seed) group's burn-in has ended, never later
because another group's burn-in is still training."""

from __future__ import annotations

import dataclasses

from medref_cli.config import ExperimentConfig, TrainConfig
from medref_cli.runs.ablate_run import next_cell, start_order
from medref_cli.runs.ablation import Cell


def _cell(row: str, kind: str, seed: int, step_matched: bool = False) -> Cell:
    cfg = dataclasses.replace(ExperimentConfig(), train=TrainConfig(step_matched=step_matched))
    return Cell(row=row, kind=kind, ratio=0.05, seed=seed, cfg=cfg)


B = {s: _cell("(burn-in)", "burnin", s) for s in range(3)}
CONTROL = {s: _cell("Baseline", "burnin", s, step_matched=True) for s in range(3)}
OURS = {s: _cell("+ ITCL (Ours)", "train", s) for s in range(3)}
EMA = {s: _cell("+ T-S EMA", "train", s) for s in range(3)}


def _simulate(cells: list[Cell], jobs: int, minutes: dict[str, int]) -> list[tuple[int, str]]:
    """Start times (in minutes) of each cell on `jobs` slots, each cell taking minutes[kind]."""
    queue = start_order(cells)
    running: list[tuple[int, Cell]] = []  # (end time, cell)
    now, started = 0, []
    while queue or running:
        while len(running) < jobs and queue:
            pick = next_cell(queue, [c for _, c in running])
            if pick is None:
                break
            cell = queue.pop(pick)
            started.append((now, f"{cell.row} s{cell.seed}"))
            running.append((now + minutes[cell.kind], cell))
        now = min(end for end, _ in running)
        running = [(end, c) for end, c in running if end > now]
    return started


def test_a_semi_supervised_cell_waits_only_for_its_own_groups_burnin():
    # a queued burn-in may always start
    assert next_cell([B[1], OURS[0], OURS[1]], []) == 0
    # with burn-in 1 running, Ours seed 1 waits and Ours seed 0 starts
    assert next_cell([OURS[1], OURS[0]], [B[1]]) == 1
    # every queued cell waits on a running burn-in: nothing starts
    assert next_cell([OURS[1], EMA[1]], [B[1]]) is None
    # a step-matched control is supervised: it never waits, and no cell waits for it
    assert next_cell([CONTROL[1]], [B[1]]) == 0
    assert next_cell([OURS[1]], [CONTROL[1]]) == 0


def test_two_slots_never_idle_while_a_cell_could_run():
    cells = [CONTROL[0], OURS[0], OURS[1], OURS[2], B[0], B[1], B[2]]  # burn-ins are queued first
    started = _simulate(cells, jobs=2, minutes={"burnin": 6, "train": 20})
    # burn-ins 0 and 1 at 0; at 6 burn-in 2 and a control (the burn-in kind never waits); at 12 the
    # control and burn-in 2 end, so Ours seeds 0 and 1 start; Ours seed 2 at 32
    assert started == [(0, "(burn-in) s0"), (0, "(burn-in) s1"), (6, "(burn-in) s2"), (6, "Baseline s0"),
                       (12, "+ ITCL (Ours) s0"), (12, "+ ITCL (Ours) s1"), (32, "+ ITCL (Ours) s2")]


def test_a_cell_starts_as_soon_as_its_burnin_ends_not_after_the_whole_wave():
    # three groups on two slots: the third burn-in runs beside the first SSL cell instead of alone
    cells = [B[0], B[1], B[2], OURS[0], OURS[1], OURS[2]]
    started = _simulate(cells, jobs=2, minutes={"burnin": 6, "train": 20})
    assert started == [(0, "(burn-in) s0"), (0, "(burn-in) s1"), (6, "(burn-in) s2"), (6, "+ ITCL (Ours) s0"),
                       (12, "+ ITCL (Ours) s1"), (26, "+ ITCL (Ours) s2")]
