"""The ledger's tables (SQLAlchemy 2.x ORM). Portable: SQLite by default, PostgreSQL unchanged.

One `runs` row per command execution; metric history, final metrics, per-image scores and
artifacts hang off it. Everything a reader needs to trust a number is on the run row: the
resolved config and its hash, seeds, data identity, split identity, code version, packages, host.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Bump when the tables change, and add a step to `medref_cli.ledger.migrate.MIGRATIONS`.
SCHEMA_VERSION = 2

RUN_STATUSES = ("running", "finished", "failed", "killed", "lost")


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the ledger itself (schema version, creation time)."""

    __tablename__ = "ledger_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_interval_s: Mapped[float] = mapped_column(Float, default=30.0)
    pid: Mapped[int] = mapped_column(Integer)
    command: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)

    config: Mapped[dict] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    config_schema: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int | None] = mapped_column(Integer)
    seeds: Mapped[dict] = mapped_column(JSON, default=dict)
    backbone: Mapped[str | None] = mapped_column(String(64), index=True)
    label_ratio: Mapped[float | None] = mapped_column(Float)

    dataset: Mapped[str | None] = mapped_column(String(64), index=True)
    data_root: Mapped[str | None] = mapped_column(Text)
    data_hash: Mapped[str | None] = mapped_column(String(64))
    data_files: Mapped[int | None] = mapped_column(Integer)
    split_hash: Mapped[str | None] = mapped_column(String(64))
    split_path: Mapped[str | None] = mapped_column(Text)

    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    git_diff_hash: Mapped[str | None] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(160))
    packages: Mapped[dict] = mapped_column(JSON, default=dict)
    host: Mapped[dict] = mapped_column(JSON, default=dict)

    # a free-form bag for kind-specific facts (e.g. the ablation cell a run belongs to)
    tags: Mapped[dict] = mapped_column(JSON, default=dict)

    metrics: Mapped[list[MetricPoint]] = relationship(back_populates="run", cascade="all, delete-orphan")
    finals: Mapped[list[FinalMetric]] = relationship(back_populates="run", cascade="all, delete-orphan")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="run", cascade="all, delete-orphan")

    __table_args__ = (Index("ix_runs_identity", "kind", "config_hash", "split_hash", "data_hash"),)


class MetricPoint(Base):
    """One point of a metric's history."""

    __tablename__ = "metric_history"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[float] = mapped_column(Float)

    run: Mapped[Run] = relationship(back_populates="metrics")


class FinalMetric(Base):
    __tablename__ = "final_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)

    run: Mapped[Run] = relationship(back_populates="finals")
    __table_args__ = (UniqueConstraint("run_id", "name"),)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)

    run: Mapped[Run] = relationship(back_populates="artifacts")


class ImageScore(Base):
    """Per-image scores of an evaluation, for paired tests between methods on the same images."""

    __tablename__ = "image_scores"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(16))
    sample_id: Mapped[str] = mapped_column(String(256))
    dice: Mapped[float] = mapped_column(Float)
    iou: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("run_id", "split", "sample_id"),)


class PositionScore(Base):
    """Per-image scores of a position predictor (`medref position eval`): the label, the six zone
    probabilities, and the image's Jaccard and exact match at the run's threshold (added in version 2)."""

    __tablename__ = "position_scores"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(16))
    sample_id: Mapped[str] = mapped_column(String(256))
    label: Mapped[str] = mapped_column(String(6))  # the 6-bit label as "010001" (bit order of the label)
    probs: Mapped[list] = mapped_column(JSON)  # six floats, the same order
    jaccard: Mapped[float] = mapped_column(Float)
    exact: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (UniqueConstraint("run_id", "split", "sample_id", name="uq_position_scores_sample"),)
