"""Checkpoints: written atomically, identified by sha256, loaded with weights_only=True."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from medref_cli.errors import MedrefError
from medref_cli.files import sha256_file as file_sha256
from medref_cli.ledger.recorder import kill_signals_deferred


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> str:
    """Write `state` to a temporary file beside `path`, fsync, rename. Returns the file's sha256."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise MedrefError(f"cannot write a checkpoint in {path.parent}: {exc.strerror}") from None
    try:
        with kill_signals_deferred():  # a kill waits until the file is whole and in place
            with os.fdopen(fd, "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            digest = file_sha256(Path(tmp))
            os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MedrefError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
        raise
    return digest


def load_checkpoint(path: str | Path, expected_sha256: str | None = None, map_location: str = "cpu") -> dict:
    """Load a checkpoint (tensors and plain data only); refuse it if its sha256 differs from the record."""
    path = Path(path)
    if not path.is_file():
        raise MedrefError(f"checkpoint not found: {path}")
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256:
            raise MedrefError(
                f"checkpoint {path} does not match its recorded sha256 ({actual[:12]}... != {expected_sha256[:12]}...)"
            )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise MedrefError(f"checkpoint {path} is not a readable medref checkpoint: {str(exc).splitlines()[0]}") from None
