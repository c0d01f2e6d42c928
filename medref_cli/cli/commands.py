"""Which command lives where. Each module holds one command group and nothing but glue."""

from __future__ import annotations

import importlib

import typer

# name -> module exposing `app`, a Typer group of sub-commands
GROUPS: dict[str, str] = {
    "runs": "medref_cli.cli.runs",
    "config": "medref_cli.cli.config_cmd",
    "data": "medref_cli.cli.data",
    "text": "medref_cli.cli.text",
    "position": "medref_cli.cli.position",
}

# name -> (module, function) of a single command
COMMANDS: dict[str, tuple[str, str]] = {
    "split": ("medref_cli.cli.split", "split"),
    "burnin": ("medref_cli.cli.burnin", "burnin"),
    "evaluate": ("medref_cli.cli.evaluate", "evaluate"),
    "train": ("medref_cli.cli.train", "train"),
    "ablate": ("medref_cli.cli.ablate", "ablate"),
    "models": ("medref_cli.cli.models", "models"),
    "predict": ("medref_cli.cli.predict", "predict"),
    "report": ("medref_cli.cli.report", "report"),
    "bench": ("medref_cli.cli.bench", "bench"),
}


def register(app: typer.Typer) -> None:
    for name, module in GROUPS.items():
        app.add_typer(importlib.import_module(module).app, name=name)
    for name, (module, func) in COMMANDS.items():
        app.command(name)(getattr(importlib.import_module(module), func))
