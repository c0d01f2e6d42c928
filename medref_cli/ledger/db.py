"""Engine and sessions for the ledger, and the small versioned migrator.

SQLite is opened in WAL mode with a busy timeout, and every write transaction starts with
`BEGIN IMMEDIATE`, so concurrent writers queue on the write lock instead of failing with
"database is locked" when a deferred read transaction tries to upgrade. Any other SQLAlchemy
URL (PostgreSQL) is used as it is.

Why a small versioned migrator rather than Alembic: the ledger lives inside an installed package
and must upgrade itself the first time a newer medref opens it, with no alembic.ini or
migration folder on the user's disk, on SQLite and PostgreSQL alike. An ordered list of
(version, step) functions run in one transaction, with the version stored in the ledger, is all
that needs; a fresh ledger is created at the newest schema and stamped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from medref_cli.errors import MedrefError
from medref_cli.ledger.schema import SCHEMA_VERSION, Base, Meta, PositionScore
from medref_cli.ledger.secrets import mask_text, mask_url, url_secrets

BUSY_TIMEOUT_S = 60.0
MIGRATION_LOCK_KEY = 0x6D656472  # 'medr': PostgreSQL advisory lock held while a ledger is created or upgraded

# version -> step that upgrades a ledger from version-1 to version (runs inside one transaction)
MigrationStep = Callable[[Connection], None]


def _add_position_scores(conn: Connection) -> None:
    """Version 2: the per-image scores of position predictors."""
    PositionScore.__table__.create(conn, checkfirst=True)


MIGRATIONS: dict[int, MigrationStep] = {2: _add_position_scores}


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// URL (query dropped); None for another backend or in-memory."""
    if not url.startswith("sqlite:///"):
        return None
    raw = url[len("sqlite:///"):].split("?", 1)[0]
    return None if raw in ("", ":memory:") else Path(raw)


def sqlite_file_missing(url: str) -> bool:
    """True for a sqlite:/// URL whose database file does not exist yet (nothing recorded there)."""
    path = sqlite_path(url)
    return path is not None and not path.exists()


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # let SQLAlchemy, not the driver, decide when transactions begin
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("medref_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class Ledger:
    """An open ledger: `write()` and `read()` give sessions in a transaction."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url  # as given, credentials included: never show it; `shown_url` is for messages
        self.shown_url = mask_url(url)
        self.secrets = url_secrets(url)
        self.engine = engine
        self._write = sessionmaker(engine, expire_on_commit=False)
        self._read = sessionmaker(engine.execution_options(medref_readonly=True), expire_on_commit=False)

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction (BEGIN IMMEDIATE on SQLite): commits on success, rolls back on error."""
        with self._write.begin() as session:
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    def write_with_retry(self, fn: Callable[[Session], object], attempts: int = 5) -> object:
        """Run `fn(session)` in a write transaction; retry if the database stays locked."""
        delay = 0.05
        for attempt in range(attempts):
            try:
                with self.write() as session:
                    return fn(session)
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or attempt == attempts - 1:
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()


def schema_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(Meta.__tablename__):
        return None
    row = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar_one_or_none()
    return int(row) if row is not None else None


def _stamp(conn: Connection, version: int) -> None:
    table = Meta.__table__
    conn.execute(table.delete().where(table.c.key == "schema_version"))
    conn.execute(table.insert().values(key="schema_version", value=str(version)))


def migrate(engine: Engine, target: int = SCHEMA_VERSION, steps: dict[int, MigrationStep] | None = None) -> int:
    """Create a fresh ledger at `target`, or upgrade an older one step by step. Returns the version."""
    steps = MIGRATIONS if steps is None else steps
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # processes opening one fresh ledger at once (a grid's cells, jobs on several nodes) take
            # turns: the first creates it, the others then find it made (DDL is transactional there)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        current = schema_version(conn)
        if current is None:
            if inspect(conn).get_table_names():
                tables = ", ".join(sorted(inspect(conn).get_table_names())[:5])
                raise MedrefError(f"the ledger database holds foreign tables ({tables}); use another ledger file")
            Base.metadata.create_all(conn)
            _stamp(conn, target)
            return target
        if current > target:
            raise MedrefError(
                f"the ledger has schema version {current}, newer than this medref understands ({target}); "
                "upgrade medref"
            )
        for version in range(current + 1, target + 1):
            if version not in steps:
                raise MedrefError(f"no migration step to ledger schema version {version}")
            steps[version](conn)
            _stamp(conn, version)
        return target


def default_ledger_url(explicit: str | None = None, results_dir: str | Path = "results") -> str:
    """`explicit`, else $MEDREF_LEDGER, else SQLite inside the results folder."""
    import os

    return explicit or os.environ.get("MEDREF_LEDGER") or f"sqlite:///{Path(results_dir) / 'ledger.db'}"


def _is_sqlite_file(path: Path) -> bool:
    """Whether SQLite reads `path` as a database, asked through SQLite itself (read-only).

    Never open the file with a plain open(): POSIX record locks belong to a process and an inode,
    so closing any other descriptor of the ledger file drops the locks every SQLite connection of
    this process holds on it (a heartbeat thread's open transaction, say). Another process may then
    take the exclusive lock, checkpoint and delete the WAL under that transaction and corrupt the
    ledger. SQLite's own descriptors are shared per inode and closed only when no lock needs them.
    """
    import sqlite3

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return True  # unreadable for another reason: the real open below reports it
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        return "not a database" not in str(exc)
    finally:
        conn.close()
    return True


def open_ledger(url: str, create: bool = True) -> Ledger:
    """Open (and create or upgrade) the ledger at a SQLAlchemy URL. Errors are one line."""
    path = sqlite_path(url)
    if path is not None:
        if not path.exists() and not create:
            raise MedrefError(f"no ledger at {path}: nothing recorded there yet (pass --ledger URL or set MEDREF_LEDGER)")
        if not path.parent.exists():
            if not create:
                raise MedrefError(f"no ledger at {path}: nothing recorded there yet (pass --ledger URL or set MEDREF_LEDGER)")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MedrefError(f"cannot create the ledger folder {path.parent}: {exc.strerror}") from None
        if path.exists() and path.is_file() and path.stat().st_size > 0 and not _is_sqlite_file(path):
            raise MedrefError(f"{path} is not a SQLite database; point --ledger at a ledger file")
    try:
        engine = create_engine(url, future=True, pool_pre_ping=path is None)
    except Exception as exc:  # noqa: BLE001 - URL parsing or missing driver: the user's input
        raise MedrefError(f"cannot open ledger URL '{mask_url(url)}': {mask_text(str(exc), url_secrets(url))}") from None
    if engine.dialect.name == "sqlite":
        _install_sqlite_hooks(engine)
    try:
        migrate(engine)
    except MedrefError:
        engine.dispose()
        raise
    except (OperationalError, DatabaseError) as exc:
        engine.dispose()
        reason = str(exc.orig) if getattr(exc, "orig", None) is not None else str(exc)
        reason = mask_text(reason.splitlines()[0] if reason else type(exc).__name__, url_secrets(url))
        raise MedrefError(f"cannot open the ledger at {mask_url(url)}: {reason}") from None
    return Ledger(url, engine)
