"""Recording one run: its row, heartbeat, metrics, artifacts, and an honest final status.

    with record_run(ledger, "burnin", cfg, dataset=..., data_hash=...) as run:
        run.log_metrics({"loss": 0.4}, step=10)
        run.add_artifact(path, role="checkpoint")
        run.set_final({"dice_global": 0.81})

Leaving the block normally marks the run finished; an exception marks it failed with the error
and traceback; SIGINT or SIGTERM marks it killed. A process that dies without a word (SIGKILL,
power loss) stops its heartbeat, and readers then show the run as lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, update

from medref_cli.config import ExperimentConfig, config_hash, schema_hash, to_dict
from medref_cli.files import sha256_file
from medref_cli.ledger.db import Ledger
from medref_cli.ledger.provenance import code_version, host_info, package_versions
from medref_cli.ledger.schema import Artifact, FinalMetric, ImageScore, MetricPoint, PositionScore, Run
from medref_cli.ledger.secrets import command_secrets, mask_text, masked_command


class RunKilled(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (or SIGINT) during a run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunRecorder:
    """A handle on one running ledger row. Every write is its own short transaction."""

    def __init__(self, ledger: Ledger, run_id: int, heartbeat_s: float, elapsed_s: float = 0.0) -> None:
        """`elapsed_s`: wall time the run already spent (a resumed run continues its metric clock)."""
        self.ledger = ledger
        self.id = run_id
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = utcnow().timestamp() - elapsed_s

    # ---- writes -------------------------------------------------------------------------
    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """Append one point per metric to the history (with wall time since the run started)."""
        now = utcnow().timestamp() - self._t0
        rows = [
            MetricPoint(run_id=self.id, name=name, step=int(step), value=float(value), wall_time=now)
            for name, value in values.items()
        ]
        self.ledger.write_with_retry(lambda s: s.add_all(rows))

    def log_metric(self, name: str, value: float, step: int) -> None:
        self.log_metrics({name: value}, step)

    def set_final(self, values: dict[str, float]) -> None:
        """Record (or replace) final metrics."""

        def _write(session) -> None:
            for name, value in values.items():
                existing = session.query(FinalMetric).filter_by(run_id=self.id, name=name).one_or_none()
                if existing is None:
                    session.add(FinalMetric(run_id=self.id, name=name, value=float(value)))
                else:
                    existing.value = float(value)

        self.ledger.write_with_retry(_write)

    def add_artifact(self, path: str | Path, role: str, sha256: str | None = None) -> str:
        """Record a file the run produced, with its sha256 and size. Returns the sha256."""
        path = Path(path)
        digest = sha256 or sha256_file(path)
        row = Artifact(run_id=self.id, role=role, path=str(path.resolve()), sha256=digest, bytes=path.stat().st_size)
        self.ledger.write_with_retry(lambda s: s.add(row))
        return digest

    def set_artifact(self, path: str | Path, role: str, sha256: str | None = None) -> str:
        """Record a file that is rewritten in place: the run keeps one row of `role`, the newest."""
        path = Path(path)
        digest = sha256 or sha256_file(path)
        row = Artifact(run_id=self.id, role=role, path=str(path.resolve()), sha256=digest, bytes=path.stat().st_size)

        def _write(session) -> None:
            session.execute(delete(Artifact).where(Artifact.run_id == self.id, Artifact.role == role))
            session.add(row)

        self.ledger.write_with_retry(_write)
        return digest

    def add_image_scores(self, split: str, ids: Iterable[str], dice: Iterable[float], iou: Iterable[float]) -> None:
        rows = [
            ImageScore(run_id=self.id, split=split, sample_id=i, dice=float(d), iou=float(j))
            for i, d, j in zip(ids, dice, iou, strict=True)
        ]
        self.ledger.write_with_retry(lambda s: s.add_all(rows))

    def add_position_scores(self, split: str, ids: Iterable[str], labels: Iterable[Iterable[int]],
                            probs: Iterable[Iterable[float]], jaccard: Iterable[float], exact: Iterable[bool]) -> None:
        rows = [
            PositionScore(run_id=self.id, split=split, sample_id=i, label="".join(str(int(b)) for b in lab),
                          probs=[float(x) for x in pr], jaccard=float(j), exact=bool(e))
            for i, lab, pr, j, e in zip(ids, labels, probs, jaccard, exact, strict=True)
        ]
        self.ledger.write_with_retry(lambda s: s.add_all(rows))

    def update(self, **facts: Any) -> None:
        """Set run columns learned after the start (split_hash, data_hash, tags, ...)."""
        unknown = [k for k in facts if k not in Run.__table__.c]
        if unknown:
            raise ValueError(f"unknown run fields: {unknown}")
        self.ledger.write_with_retry(lambda s: s.execute(update(Run).where(Run.id == self.id).values(**facts)))

    def merge_tags(self, **tags: Any) -> None:
        """Add or replace some tags, keeping the others (read and written in one transaction)."""

        def _write(session) -> None:
            run = session.get(Run, self.id)
            run.tags = {**(run.tags or {}), **tags}

        self.ledger.write_with_retry(_write)

    # ---- lifecycle ----------------------------------------------------------------------
    def beat(self) -> None:
        self.ledger.write_with_retry(
            lambda s: s.execute(
                update(Run).where(Run.id == self.id, Run.status == "running").values(heartbeat_at=utcnow())
            )
        )

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(Exception):  # a missed beat only makes the run look stale sooner
                self.beat()

    def start_heartbeat(self) -> None:
        if self.heartbeat_s > 0:
            self._thread = threading.Thread(target=self._heartbeat_loop, name=f"medref-heartbeat-{self.id}", daemon=True)
            self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def close(self, status: str, error: str | None = None, tb: str | None = None) -> None:
        self.stop_heartbeat()
        now = utcnow()
        # an error's text may quote the ledger URL (or its password): recorded masked
        error, tb = mask_text(error, self.ledger.secrets), mask_text(tb, self.ledger.secrets)
        self.ledger.write_with_retry(
            lambda s: s.execute(
                update(Run)
                .where(Run.id == self.id)
                .values(status=status, ended_at=now, heartbeat_at=now, error=error, traceback=tb)
            ),
            attempts=10,
        )


def command_line(secrets: Iterable[str] = ()) -> str:
    """The user's command (a worker process of a multi-process run is told its launcher's), with
    every credential masked: a `--ledger` URL's password, that of MEDREF_LEDGER, and `secrets`."""
    secrets = [*secrets, *command_secrets(sys.argv)]
    launched = os.environ.get("MEDREF_COMMAND_LINE")
    if launched:
        return mask_text(launched, secrets)
    return masked_command(["medref", *sys.argv[1:]], secrets) if sys.argv else "medref"


@contextlib.contextmanager
def _kill_signals_raise() -> Iterator[None]:
    """Turn SIGTERM into RunKilled in the main thread for the duration of the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _handler(signum, _frame):
        raise RunKilled(signum)

    previous = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def kill_signals_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block ends, then raise RunKilled for the first one.

    For writes that must not be cut in half (a checkpoint): a signal arriving inside `torch.save`
    would surface as the serialiser's RuntimeError, and the run would be closed as failed instead
    of killed. Outside the main thread (no signal handlers there) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def _hold(signum, _frame):
        pending.append(signum)

    previous = {sig: signal.signal(sig, _hold) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        raise RunKilled(pending[0])


@contextlib.contextmanager
def record_run(
    ledger: Ledger,
    kind: str,
    cfg: ExperimentConfig,
    *,
    parent_id: int | None = None,
    seeds: dict[str, int] | None = None,
    weights: dict[str, Any] | None = None,
    **facts: Any,
) -> Iterator[RunRecorder]:
    """Create a `running` row for this process and keep it honest until the block ends. `weights`: the
    identity of the encoders' weights (name, revision, sha256 of the files), kept in the tags."""
    code = code_version()
    now = utcnow()
    seeds = seeds or {"split": cfg.split.seed, "train": cfg.train.seed}
    columns: dict[str, Any] = {
        "kind": kind,
        "name": cfg.name,
        "parent_id": parent_id,
        "status": "running",
        "started_at": now,
        "heartbeat_at": now,
        "heartbeat_interval_s": cfg.runtime.heartbeat_s,
        "pid": os.getpid(),
        "command": command_line(ledger.secrets),
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "config_schema": schema_hash(),
        "seed": cfg.train.seed,
        "seeds": seeds,
        "backbone": cfg.model.backbone,
        "label_ratio": cfg.split.ratio,
        "git_commit": code.commit,
        "git_dirty": code.dirty,
        "git_diff_hash": code.diff_hash,
        "code_version": code.label,
        "packages": package_versions(),
        "host": host_info(),
        "tags": {},
    }
    columns.update(facts)  # the caller knows better (e.g. a split run has no backbone)
    if weights:
        columns["tags"] = {**(columns["tags"] or {}), "weights": weights}
    row = Run(**columns)
    ledger.write_with_retry(lambda s: s.add(row))
    with run_lifecycle(RunRecorder(ledger, row.id, cfg.runtime.heartbeat_s)) as run:
        yield run


@contextlib.contextmanager
def run_lifecycle(run: RunRecorder) -> Iterator[RunRecorder]:
    """Beat while the block runs; then close the row finished, failed (an exception) or killed."""
    run.start_heartbeat()
    try:
        with _kill_signals_raise():
            yield run
    except KeyboardInterrupt as exc:
        name = signal.Signals(exc.signum).name if isinstance(exc, RunKilled) else "SIGINT"
        run.close("killed", error=f"killed by {name}")
        raise
    except BaseException as exc:
        run.close("failed", error=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc())
        raise
    else:
        run.close("finished")
