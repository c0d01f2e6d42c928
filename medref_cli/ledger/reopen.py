"""Putting a killed, lost or failed run back to `running` for the process that resumes it.

    with reopen_run(ledger, run_id, heartbeat_s=30, keep_step=400, note={...}) as run:
        ...  # the same RunRecorder API as record_run; the same honest end status

The run keeps its id and everything it recorded up to the resumed training step. What it
recorded after that step is forgotten in the same transaction that reopens it: metric points
with a later step (the resumed process logs them again), and the outputs of its end (final
metrics, per-image scores, `checkpoint` artifacts), which the resumed run records again.
A run whose process is still alive, or a finished run, is refused with one line.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select

from medref_cli.errors import MedrefError
from medref_cli.ledger.db import Ledger
from medref_cli.ledger.queries import effective_status
from medref_cli.ledger.recorder import RunRecorder, run_lifecycle, utcnow
from medref_cli.ledger.schema import Artifact, FinalMetric, ImageScore, MetricPoint, Run

RESUMABLE_STATUSES = ("killed", "lost", "failed")


def _process_gone(run: Run) -> bool:
    """True when the run's recorded process ran on this host and no longer exists."""
    if (run.host or {}).get("hostname") != socket.gethostname() or not run.pid:
        return False
    if run.pid == os.getpid():
        return False
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user holds the pid
        return False
    return False


def resume_status(run: Run, now: datetime | None = None) -> str:
    """The effective status, where a `running` row whose process is gone from this host counts as lost
    at once (no need to wait for its heartbeat to go stale)."""
    status = effective_status(run, now)
    if status == "running" and _process_gone(run):
        return "lost"
    return status


def check_resumable(run: Run, command: str) -> None:
    """Raise one line unless `run` is a killed, lost or failed run of `command`'s kind."""
    if run.kind != command:
        if run.kind in ("burnin", "train"):
            raise MedrefError(f"run {run.id} is a {run.kind} run; resume it with `medref {run.kind} --resume {run.id}`")
        raise MedrefError(f"run {run.id} is a {run.kind} run; only burnin and train runs can be resumed")
    status = resume_status(run)
    if status == "finished":
        raise MedrefError(f"run {run.id} is finished; a finished run cannot be resumed")
    if status == "running":
        raise MedrefError(
            f"run {run.id} is still running (pid {run.pid} on {(run.host or {}).get('hostname')}); "
            "stop it first, or wait until `medref runs --lost` lists it"
        )
    if status not in RESUMABLE_STATUSES:
        raise MedrefError(f"run {run.id} has status {status}; only killed, lost or failed runs can be resumed")


def _reopen_row(session, run_id: int, command: str, heartbeat_s: float, keep_step: int,
                note: dict[str, Any]) -> float:
    """Check, rewind and reopen the row; returns the wall time the run had recorded up to `keep_step`."""
    run = session.get(Run, run_id)
    if run is None:
        raise MedrefError(f"no run {run_id} in the ledger")
    check_resumable(run, command)
    later = (MetricPoint.run_id == run_id) & (MetricPoint.step > keep_step)
    session.execute(delete(MetricPoint).where(later))
    session.execute(delete(FinalMetric).where(FinalMetric.run_id == run_id))
    session.execute(delete(ImageScore).where(ImageScore.run_id == run_id))
    session.execute(delete(Artifact).where(Artifact.run_id == run_id, Artifact.role == "checkpoint"))
    elapsed = session.scalar(select(func.max(MetricPoint.wall_time)).where(MetricPoint.run_id == run_id))
    now = utcnow()
    previous = {"status": resume_status(run), "error": run.error, "pid": run.pid}
    run.status, run.pid, run.heartbeat_at, run.heartbeat_interval_s = "running", os.getpid(), now, heartbeat_s
    run.ended_at = run.error = run.traceback = None
    tags = dict(run.tags or {})
    tags["resumed"] = [*tags.get("resumed", []),
                       {**note, **previous, "at": now.astimezone(UTC).isoformat(timespec="seconds")}]
    run.tags = tags
    return float(elapsed or 0.0)


@contextlib.contextmanager
def reopen_run(ledger: Ledger, run_id: int, command: str, heartbeat_s: float, keep_step: int,
               note: dict[str, Any] | None = None) -> Iterator[RunRecorder]:
    """Reopen a killed, lost or failed `command` run for this process (see the module doc)."""
    elapsed = ledger.write_with_retry(
        lambda s: _reopen_row(s, run_id, command, heartbeat_s, keep_step, note or {}))
    with run_lifecycle(RunRecorder(ledger, run_id, heartbeat_s, elapsed_s=float(elapsed))) as run:
        yield run
