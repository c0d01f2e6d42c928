"""Options shared by every command, and the one place that turns them into a config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Experiment YAML file (may `extends:` another).", show_default=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Typed override KEY=VALUE, e.g. train.lr=1e-3 (repeatable).", show_default=False),
]
LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        help="SQLAlchemy URL of the ledger (default: sqlite:///<results>/ledger.db; env MEDREF_LEDGER). "
        "Keep a PostgreSQL password in ~/.pgpass or PGPASSWORD; one in the URL is shown as ***.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def console():
    """A rich console; wide when writing to a pipe or file, so tables are not cut to 80 columns."""
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=200)


def build_config(config: Path | None, sets: list[str] | None, **overrides: Any):
    """Defaults <- --config <- typed command options <- --set; validated."""
    from medref_cli.config import load_config

    return load_config(config, overrides={k: v for k, v in overrides.items() if v is not None}, sets=sets or ())


def ledger_url(explicit: str | None, results_dir: str | Path = "results") -> str:
    """--ledger, else MEDREF_LEDGER, else SQLite inside the results folder."""
    from medref_cli.ledger.db import default_ledger_url

    return default_ledger_url(explicit, results_dir)


def device_override(gpu: int | None, cpu: bool) -> str | None:
    """--gpu N / --cpu -> runtime.device (None keeps the config's)."""
    from medref_cli.errors import MedrefError

    if gpu is not None and cpu:
        raise MedrefError("--gpu and --cpu exclude each other")
    if gpu is not None:
        if gpu < 0:
            raise MedrefError(f"--gpu expects a device index >= 0, got {gpu}")
        return f"cuda:{gpu}"
    return "cpu" if cpu else None


def data_overrides(dataset: str | None, data: Path | None) -> dict[str, Any]:
    """--dataset / --data -> config keys. A folder without a dataset name is a custom data set."""
    overrides: dict[str, Any] = {}
    if data is not None:
        overrides["data.root"] = str(data)
        overrides["data.dataset"] = dataset or "custom"
    elif dataset is not None:
        overrides["data.dataset"] = dataset
    return overrides


def int_list(text: str | None, what: str) -> list[int] | None:
    """'0,1,3' -> [0, 1, 3] (None stays None); one clear error for anything else."""
    from medref_cli.errors import MedrefError

    if text is None:
        return None
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise MedrefError(f"{what} expects comma-separated integers, got '{text}'") from None
    if any(v < 0 for v in values):
        raise MedrefError(f"{what} expects integers >= 0, got '{text}'")
    return values
