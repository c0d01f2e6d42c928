"""`medref data ...`: synthesise, check and benchmark data sets."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Synthesise, check and benchmark data sets.", no_args_is_help=True)

# name -> (module, function); each module holds one command
DATA_COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("medref_cli.cli.data_synth", "synth"),
    "check": ("medref_cli.cli.data_check", "check"),
    "bench": ("medref_cli.cli.data_bench", "bench"),
}

for _name, (_module, _func) in DATA_COMMANDS.items():
    app.command(_name)(getattr(importlib.import_module(_module), _func))
