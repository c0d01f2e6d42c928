"""Which runs a table cell counts, and why.

A cell (one row at one label ratio) counts only finished runs that recorded the metric. If its
runs fall into several config groups (same config apart from the seeds), only the
newest group (the one holding the most recently started run) is shown, never an average across
groups; a seed run twice in that group counts once, its newest run. Every run left out is
explained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from medref_cli.ledger.report_queries import RunRecord
from medref_cli.reports.identity import (
    Components,
    components,
    config_differences,
    identity_hash,
    identity_tree,
)
from medref_cli.reports.staleness import CurrentVersions, stale_reasons

NOT_COUNTED = {
    "failed": "failed",
    "killed": "killed",
    "running": "still running",
    "lost": "lost (its heartbeat stopped)",
}
MAX_LISTED_DIFFERENCES = 4


@dataclass(frozen=True)
class RunView:
    """A run with what the reports derive from its recorded config."""

    run: RunRecord
    identity: str
    components: Components | None  # train runs only
    step_matched: bool = False  # a supervised run as long as its semi-supervised run (train.step_matched)


def view_run(run: RunRecord) -> RunView:
    comps = components(run.config) if run.kind == "train" else None
    return RunView(run, identity_hash(run.config), comps, step_matched_run(run.config))


def step_matched_run(recorded: dict) -> bool:
    return bool((recorded.get("train") or {}).get("step_matched", False))


@dataclass
class Selection:
    counted: list[RunRecord] = field(default_factory=list)
    stale: dict[int, list[str]] = field(default_factory=dict)  # run id -> reasons
    explain: list[str] = field(default_factory=list)


def _ids(runs: Sequence[RunRecord]) -> str:
    return ", ".join(str(r.id) for r in runs)


def _status_lines(runs: Sequence[RunRecord]) -> list[str]:
    by_status: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_status.setdefault(run.status, []).append(run)
    return [
        f"{NOT_COUNTED.get(status, status)}: run{'s' if len(rs) > 1 else ''} {_ids(rs)}"
        for status, rs in sorted(by_status.items())
    ]


def _difference_text(shown: RunView, other: RunView) -> str:
    diffs = config_differences(identity_tree(other.run.config), identity_tree(shown.run.config))
    parts = [f"{key}={a!r} (shown: {b!r})" for key, (a, b) in list(diffs.items())[:MAX_LISTED_DIFFERENCES]]
    more = len(diffs) - MAX_LISTED_DIFFERENCES
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _newest_group(usable: list[RunView]) -> tuple[list[RunView], list[list[RunView]]]:
    groups: dict[str, list[RunView]] = {}
    for v in usable:
        groups.setdefault(v.identity, []).append(v)
    ordered = sorted(groups.values(), key=lambda g: max(v.run.id for v in g), reverse=True)
    return ordered[0], ordered[1:]


def _one_per_seed(group: list[RunView]) -> tuple[list[RunView], list[str]]:
    newest: dict[int | None, RunView] = {}
    notes = []
    for v in sorted(group, key=lambda v: v.run.id):
        previous = newest.get(v.run.seed)
        if previous is not None:
            notes.append(f"run {previous.run.id} superseded by run {v.run.id} (same seed {v.run.seed})")
        newest[v.run.seed] = v
    return sorted(newest.values(), key=lambda v: v.run.id), notes


def select_runs(candidates: Sequence[RunView], needed: Sequence[str], current: CurrentVersions) -> Selection:
    """The runs a cell counts, with an explanation of every run it leaves out."""
    sel = Selection()
    if not candidates:
        sel.explain.append("never run")
        return sel
    unfinished = [v.run for v in candidates if v.run.status != "finished"]
    finished = [v for v in candidates if v.run.status == "finished"]
    usable = [v for v in finished if all(k in v.run.finals for k in needed)]
    if not usable:
        sel.explain.append("no finished run")
    sel.explain += _status_lines(unfinished)
    usable_ids = {v.run.id for v in usable}
    for v in finished:
        if v.run.id not in usable_ids:
            missing = ", ".join(k for k in needed if k not in v.run.finals)
            sel.explain.append(f"run {v.run.id} finished without {missing}")
    if not usable:
        return sel
    group, others = _newest_group(usable)
    counted, notes = _one_per_seed(group)
    sel.counted = [v.run for v in counted]
    seeds = ", ".join(str(r.seed) for r in sel.counted)
    plural = "s" if len(counted) > 1 else ""
    sel.explain.insert(0, f"n={len(counted)}: run{plural} {_ids(sel.counted)} (seed{plural} {seeds}), "
                          f"config group {counted[-1].identity[:8]}")
    sel.explain += notes
    shown = counted[-1]
    for other in others:
        sel.explain.append(f"not averaged in: config group {other[0].identity[:8]} (runs {_ids([v.run for v in other])})"
                           f" differs in {_difference_text(shown, max(other, key=lambda v: v.run.id))}")
    for run in sel.counted:
        reasons = stale_reasons(run, current)
        if reasons:
            sel.stale[run.id] = reasons
            sel.explain.append(f"stale: run {run.id} ({', '.join(reasons)})")
    return sel
