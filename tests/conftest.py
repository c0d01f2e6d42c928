"""Shared fixtures. Nothing in the tests may reach a model hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_QATA = PROJECT_ROOT.parent / "shared" / "data" / "qata-cov19-mini"


@pytest.fixture
def qata_root() -> Path:
    """The real QaTa-COV19 subset, read-only; tests that need it skip when it is absent."""
    if not (SHARED_QATA / "prompts" / "annotation.json").is_file():
        pytest.skip(f"real data not found at {SHARED_QATA}")
    return SHARED_QATA


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small built-in synthetic data set (QaTa layout), generated once per test session."""
    from medref_cli.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic") / "synthetic"
    write_synthetic_dataset(root, n=80, seed=0)
    return root


def invoke_medref(*args: str) -> tuple[int, str, str]:
    """Run `medref ARGS` in-process in the current folder; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    from medref_cli.cli.main import run

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def medref_in_process():
    """`invoke_medref` for module-scoped fixtures (which cannot use the function-scoped `cli`)."""
    return invoke_medref


@pytest.fixture(scope="session")
def tiny_burnin_args(synthetic_root):
    """`medref burnin` arguments for a tiny model on the synthetic set at 64 px (a few seconds on a CPU)."""
    return [
        "burnin", "--dataset", "synthetic", "--data", str(synthetic_root), "--backbone", "mmi-unet-tiny",
        "--ratio", "0.5", "--epochs", "1", "--cpu", "--set", "data.image_size=64",
        "--set", "model.visual_pretrained=false", "--set", "model.text_encoder=tiny-random-bert",
        "--set", "train.batch_size=4", "--set", "runtime.progress=false",
    ]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run `medref ...` in-process inside a fresh working folder; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDREF_LEDGER", raising=False)
    return invoke_medref


# PostgreSQL: MEDREF_TEST_POSTGRES_URL, else the URL that scripts/ci/postgres.sh (run by `make test`)
# wrote for its local server. Each test gets a fresh database of its own, dropped afterwards.
POSTGRES_URL_FILE = Path(os.environ.get("MEDREF_CI_STATE", "/var/lib/medref-ci")) / "postgres.url"


def _postgres_base_url() -> tuple[str | None, bool, str]:
    """(URL, given explicitly, why there is none)."""
    explicit = os.environ.get("MEDREF_TEST_POSTGRES_URL")
    if explicit:
        return explicit, True, ""
    try:
        text = POSTGRES_URL_FILE.read_text().strip()
    except OSError as exc:
        return None, False, (f"no PostgreSQL server: MEDREF_TEST_POSTGRES_URL is unset and {POSTGRES_URL_FILE} "
                             f"cannot be read ({exc.strerror}); run scripts/ci/postgres.sh as root")
    return (text, False, "") if text else (None, False, f"{POSTGRES_URL_FILE} is empty")


@pytest.fixture
def postgres_url():
    """A URL (password included) of a fresh, empty PostgreSQL database; skips with the reason when
    there is no server (fails when MEDREF_TEST_POSTGRES_URL names one that does not answer)."""
    import uuid

    base, explicit, why = _postgres_base_url()
    if base is None:
        pytest.skip(why)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("the psycopg driver is not installed (pip install -e '.[postgres]')")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from medref_cli.ledger.secrets import mask_url

    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            can_create = bool(conn.execute(text("SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user"))
                              .scalar())
    except Exception as exc:  # noqa: BLE001 - a server that does not answer
        admin.dispose()
        message = f"PostgreSQL at {mask_url(base)} does not answer: {type(exc).__name__}"
        if explicit:
            pytest.fail(message)
        pytest.skip(message + " (run scripts/ci/postgres.sh as root)")
    if not can_create:  # a role without CREATEDB: the given database, emptied of ledger tables
        from medref_cli.ledger.schema import Base

        Base.metadata.drop_all(admin)
        admin.dispose()
        yield base
        return
    name = f"medref_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_backend(request, tmp_path):
    """The URL of an empty ledger, once on SQLite and once on PostgreSQL (skipped without a server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_url")
