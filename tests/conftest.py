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


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run `medref ...` in-process inside a fresh working folder; returns (exit code, stdout, stderr)."""
    from medref_cli.cli.main import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDREF_LEDGER", raising=False)

    def invoke(*args: str) -> tuple[int, str, str]:
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code, out.getvalue(), err.getvalue()

    return invoke
