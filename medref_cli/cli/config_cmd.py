"""`medref config show|keys|hash`: what a config resolves to."""

from __future__ import annotations

import typer

from medref_cli.cli.common import ConfigOpt, SetOpt, build_config

app = typer.Typer(help="Show the resolved experiment config, its keys and its hash.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the fully resolved config as YAML, followed by its hash."""
    from medref_cli.config import config_hash, dump_yaml

    cfg = build_config(config, set_)
    typer.echo(dump_yaml(cfg), nl=False)
    typer.echo(f"# config_hash: {config_hash(cfg)}")


@app.command("keys")
def keys() -> None:
    """List every settable key with its type and default."""
    from medref_cli.config import ExperimentConfig, all_keys, to_flat

    defaults = to_flat(ExperimentConfig())
    for key, typ in all_keys().items():
        typer.echo(f"{key}\t{typ.__name__}\t{defaults[key]!r}")


@app.command("hash")
def hash_(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print only the config hash (sha256 of the canonical resolved config)."""
    from medref_cli.config import config_hash

    typer.echo(config_hash(build_config(config, set_)))
