"""Reading the ledger: run lists with filters, one run in full, differences between runs.

A `running` row whose heartbeat is older than LOST_AFTER heartbeat intervals is reported with
the status `lost`: its process died without a word. Readers never rewrite the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from medref_cli.errors import MedrefError
from medref_cli.ledger.db import Ledger
from medref_cli.ledger.schema import Artifact, FinalMetric, ImageScore, MetricPoint, PositionScore, Run
from medref_cli.ledger.secrets import mask_text

LOST_AFTER = 3.0  # heartbeat intervals without a beat


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; the ledger always writes UTC."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)


def effective_status(run: Run, now: datetime | None = None) -> str:
    if run.status != "running":
        return run.status
    now = now or datetime.now(UTC)
    stale_after = timedelta(seconds=LOST_AFTER * max(run.heartbeat_interval_s, 0.01))
    return "lost" if now - _aware(run.heartbeat_at) > stale_after else "running"


@dataclass(frozen=True)
class RunFilter:
    kind: str | None = None
    status: str | None = None
    dataset: str | None = None
    backbone: str | None = None
    parent_id: int | None = None
    limit: int | None = None


def summary(run: Run, finals: dict[str, float] | None = None) -> dict[str, Any]:
    """The fields a run list shows."""
    return {
        "id": run.id,
        "kind": run.kind,
        "name": run.name,
        "status": effective_status(run),
        "parent": run.parent_id,
        "dataset": run.dataset,
        "backbone": run.backbone,
        "ratio": run.label_ratio,
        "seed": run.seed,
        "started": _aware(run.started_at).isoformat(timespec="seconds"),
        "ended": _aware(run.ended_at).isoformat(timespec="seconds") if run.ended_at else None,
        "config_hash": run.config_hash,
        "code_version": run.code_version,
        "finals": finals or {},
    }


def list_runs(ledger: Ledger, flt: RunFilter = RunFilter()) -> list[dict[str, Any]]:
    stmt = select(Run).order_by(Run.id)
    for column, value in (
        (Run.kind, flt.kind),
        (Run.dataset, flt.dataset),
        (Run.backbone, flt.backbone),
        (Run.parent_id, flt.parent_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if flt.status in ("finished", "failed", "killed"):
        stmt = stmt.where(Run.status == flt.status)
    elif flt.status in ("running", "lost"):
        stmt = stmt.where(Run.status == "running")
    with ledger.read() as session:
        runs = list(session.scalars(stmt))
        finals: dict[int, dict[str, float]] = {}
        for fm in session.scalars(select(FinalMetric).where(FinalMetric.run_id.in_([r.id for r in runs]))):
            finals.setdefault(fm.run_id, {})[fm.name] = fm.value
        rows = [summary(r, finals.get(r.id)) for r in runs]
    if flt.status is not None:
        rows = [r for r in rows if r["status"] == flt.status]
    if flt.limit:
        rows = rows[-flt.limit:]
    return rows


def get_run(ledger: Ledger, run_id: int) -> Run:
    with ledger.read() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise MedrefError(f"no run {run_id} in the ledger ({ledger.shown_url})")
        session.expunge(run)
        return run


def run_detail(ledger: Ledger, run_id: int, history_points: int = 0) -> dict[str, Any]:
    """Everything recorded about one run."""
    run = get_run(ledger, run_id)
    with ledger.read() as session:
        finals = {f.name: f.value for f in session.scalars(select(FinalMetric).where(FinalMetric.run_id == run_id))}
        artifacts = [
            {"role": a.role, "path": a.path, "sha256": a.sha256, "bytes": a.bytes}
            for a in session.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id))
        ]
        points = list(
            session.scalars(
                select(MetricPoint).where(MetricPoint.run_id == run_id).order_by(MetricPoint.name, MetricPoint.step)
            )
        )
        n_scores = len(list(session.scalars(select(ImageScore.id).where(ImageScore.run_id == run_id))))
        n_position = len(list(session.scalars(select(PositionScore.id).where(PositionScore.run_id == run_id))))
        children = list(session.scalars(select(Run.id).where(Run.parent_id == run_id).order_by(Run.id)))
    history: dict[str, list[list[float]]] = {}
    for p in points:
        history.setdefault(p.name, []).append([p.step, p.value, round(p.wall_time, 3)])
    detail = summary(run, finals)
    detail.update(
        {
            "heartbeat": _aware(run.heartbeat_at).isoformat(timespec="seconds"),
            "pid": run.pid,
            # masked again on the way out: a row recorded by an older medref may hold a password
            "command": mask_text(run.command, ledger.secrets),
            "error": mask_text(run.error, ledger.secrets),
            "traceback": mask_text(run.traceback, ledger.secrets),
            "seeds": run.seeds,
            "data": {
                "dataset": run.dataset,
                "root": run.data_root,
                "hash": run.data_hash,
                "files": run.data_files,
                "split_hash": run.split_hash,
                "split_path": run.split_path,
            },
            "code": {
                "version": run.code_version,
                "commit": run.git_commit,
                "dirty": run.git_dirty,
                "diff_hash": run.git_diff_hash,
            },
            "config_schema": run.config_schema,
            "config": run.config,
            "packages": run.packages,
            "host": run.host,
            "tags": run.tags,
            "weights": (run.tags or {}).get("weights"),
            "artifacts": artifacts,
            "metric_points": {name: len(v) for name, v in history.items()},
            "image_scores": n_scores,
            "position_scores": n_position,
            "children": children,
        }
    )
    if history_points:
        detail["history"] = {name: v[-history_points:] for name, v in history.items()}
    return detail


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def diff_runs(ledger: Ledger, a: int, b: int) -> dict[str, Any]:
    """What differs between two runs: config keys, code version, data and split identity."""
    ra, rb = get_run(ledger, a), get_run(ledger, b)
    ca, cb = _flatten(ra.config or {}), _flatten(rb.config or {})
    config = {k: [ca.get(k), cb.get(k)] for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)}
    facts = {}
    for label, attr in (
        ("kind", "kind"),
        ("config_hash", "config_hash"),
        ("config_schema", "config_schema"),
        ("code_version", "code_version"),
        ("git_commit", "git_commit"),
        ("git_dirty", "git_dirty"),
        ("dataset", "dataset"),
        ("data_root", "data_root"),
        ("data_hash", "data_hash"),
        ("split_hash", "split_hash"),
        ("seed", "seed"),
    ):
        va, vb = getattr(ra, attr), getattr(rb, attr)
        facts[label] = {"a": va, "b": vb, "same": va == vb}
    from medref_cli.ledger.provenance import weights_label

    for role in ("visual", "text"):
        va, vb = (weights_label(((r.tags or {}).get("weights") or {}).get(role)) for r in (ra, rb))
        facts[f"{role} weights"] = {"a": va, "b": vb, "same": va == vb}
    packages = {
        k: [ra.packages.get(k), rb.packages.get(k)]
        for k in sorted(set(ra.packages or {}) | set(rb.packages or {}))
        if (ra.packages or {}).get(k) != (rb.packages or {}).get(k)
    }
    return {"a": a, "b": b, "config": config, "facts": facts, "packages": packages}


def finished_runs(
    ledger: Ledger, kind: str, config_hash: str, split_hash: str | None, data_hash: str | None, code_version: str
) -> list[Run]:
    """The finished runs of the same experiment on the same split, data and code, newest first."""
    stmt = (
        select(Run)
        .where(
            Run.kind == kind,
            Run.status == "finished",
            Run.config_hash == config_hash,
            Run.split_hash == split_hash,
            Run.data_hash == data_hash,
            Run.code_version == code_version,
        )
        .order_by(Run.id.desc())
    )
    with ledger.read() as session:
        runs = list(session.scalars(stmt))
        for run in runs:
            session.expunge(run)
        return runs

