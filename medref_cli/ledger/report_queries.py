"""Read-only queries the reports need: runs with their finals, per-image scores, metric curves.

Every run comes back as a plain `RunRecord` (no session attached) with its effective status
(a `running` row whose heartbeat stopped reads as `lost`), so report code never touches the ORM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from medref_cli.errors import MedrefError
from medref_cli.ledger.db import Ledger
from medref_cli.ledger.queries import effective_status
from medref_cli.ledger.schema import FinalMetric, ImageScore, MetricPoint, Run

# kinds whose test metrics fill the report tables
TABLE_KINDS = ("burnin", "train")


@dataclass(frozen=True)
class RunRecord:
    """One run as the reports see it."""

    id: int
    kind: str
    parent_id: int | None
    status: str  # effective: running | finished | failed | killed | lost
    dataset: str | None
    backbone: str | None
    label_ratio: float | None
    seed: int | None
    config: dict[str, Any]
    config_hash: str
    config_schema: str
    code_version: str
    data_hash: str | None
    split_hash: str | None
    error: str | None
    finals: dict[str, float] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)


def _record(run: Run, finals: dict[str, float], now: datetime | None) -> RunRecord:
    return RunRecord(
        id=run.id,
        kind=run.kind,
        parent_id=run.parent_id,
        status=effective_status(run, now),
        dataset=run.dataset,
        backbone=run.backbone,
        label_ratio=run.label_ratio,
        seed=run.seed,
        config=run.config or {},
        config_hash=run.config_hash,
        config_schema=run.config_schema,
        code_version=run.code_version,
        data_hash=run.data_hash,
        split_hash=run.split_hash,
        error=run.error,
        finals=finals,
        tags=run.tags or {},
    )


def _records(ledger: Ledger, stmt: Select, now: datetime | None) -> list[RunRecord]:
    with ledger.read() as session:
        runs = list(session.scalars(stmt.order_by(Run.id)))
        finals: dict[int, dict[str, float]] = {}
        ids = [r.id for r in runs]
        if ids:
            for fm in session.scalars(select(FinalMetric).where(FinalMetric.run_id.in_(ids))):
                finals.setdefault(fm.run_id, {})[fm.name] = fm.value
        return [_record(r, finals.get(r.id, {}), now) for r in runs]


def table_runs(
    ledger: Ledger,
    kinds: Sequence[str] = TABLE_KINDS,
    datasets: Sequence[str] | None = None,
    backbones: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[RunRecord]:
    """Runs of `kinds` in every status (the reports explain why a cell has none), oldest first."""
    stmt = select(Run).where(Run.kind.in_(list(kinds)))
    if datasets:
        stmt = stmt.where(Run.dataset.in_(list(datasets)))
    if backbones:
        stmt = stmt.where(Run.backbone.in_(list(backbones)))
    return _records(ledger, stmt, now)


def runs_by_id(ledger: Ledger, run_ids: Sequence[int], now: datetime | None = None) -> list[RunRecord]:
    """The named runs in the order given; an unknown id is the user's error."""
    found = {r.id: r for r in _records(ledger, select(Run).where(Run.id.in_(list(run_ids))), now)}
    missing = [i for i in run_ids if i not in found]
    if missing:
        raise MedrefError(f"no run {', '.join(map(str, missing))} in the ledger ({ledger.shown_url})")
    return [found[i] for i in run_ids]


def newest_data_hashes(ledger: Ledger) -> dict[str, str]:
    """dataset -> the data hash of the newest run (highest id, any kind) that recorded one."""
    stmt = (
        select(Run.dataset, Run.data_hash)
        .where(Run.dataset.is_not(None), Run.data_hash.is_not(None))
        .order_by(Run.id)
    )
    newest: dict[str, str] = {}
    with ledger.read() as session:
        for dataset, data_hash in session.execute(stmt):
            newest[dataset] = data_hash
    return newest


def image_scores(ledger: Ledger, run_ids: Iterable[int], split: str = "test") -> dict[int, dict[str, tuple[float, float]]]:
    """run id -> {sample id: (dice, iou)} of the per-image scores on `split`."""
    ids = sorted(set(run_ids))
    scores: dict[int, dict[str, tuple[float, float]]] = {i: {} for i in ids}
    if not ids:
        return scores
    stmt = select(ImageScore).where(ImageScore.run_id.in_(ids), ImageScore.split == split)
    with ledger.read() as session:
        for row in session.scalars(stmt):
            scores[row.run_id][row.sample_id] = (row.dice, row.iou)
    return scores


def metric_history(ledger: Ledger, run_ids: Iterable[int]) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """run id -> {metric name: [(step, value), ...] in step order}."""
    ids = sorted(set(run_ids))
    history: dict[int, dict[str, list[tuple[int, float]]]] = {i: {} for i in ids}
    if not ids:
        return history
    stmt = (
        select(MetricPoint)
        .where(MetricPoint.run_id.in_(ids))
        .order_by(MetricPoint.run_id, MetricPoint.name, MetricPoint.step, MetricPoint.id)
    )
    with ledger.read() as session:
        for p in session.scalars(stmt):
            history[p.run_id].setdefault(p.name, []).append((p.step, p.value))
    return history


def run_walls(ledger: Ledger, run_ids: Iterable[int]) -> dict[int, float | None]:
    """run id -> seconds from its start to its end as recorded (None while it has no end)."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    stmt = select(Run.id, Run.started_at, Run.ended_at).where(Run.id.in_(ids))
    with ledger.read() as session:
        return {run_id: None if ended is None else (ended - started).total_seconds()
                for run_id, started, ended in session.execute(stmt)}
