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
