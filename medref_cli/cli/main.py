"""The `medref` command: joins one Typer app per command group. No logic beyond glue."""

from __future__ import annotations

import sys

import typer

from medref_cli import __version__

app = typer.Typer(
    name="medref",
    help="Semi-supervised medical referring image segmentation, with a reproducibility ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medref {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """medref: split, train, evaluate and report Semi-MedRef experiments."""


def _register() -> None:
    from medref_cli.cli import commands

    commands.register(app)


_register()


def _click_errors() -> tuple[type[Exception], ...]:
    """Click's exception base: Typer >= 0.20 ships its own copy, older releases use click."""
    bases: list[type[Exception]] = []
    try:
        from typer._click.exceptions import ClickException

        bases.append(ClickException)
    except ImportError:  # pragma: no cover - depends on the installed Typer
        pass
    try:
        import click

        bases.append(click.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(bases)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    from medref_cli.errors import MedrefError

    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="medref", standalone_mode=False)
    except MedrefError as exc:
        print(f"medref: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("medref: interrupted", file=sys.stderr)
        sys.exit(130)
    except _click_errors() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
        else:
            print(f"medref: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except Exception:  # noqa: BLE001 - a bug: reported as Python would, exit 1
        # a bug: its traceback, with any ledger credential in it masked
        import traceback

        from medref_cli.ledger.secrets import command_secrets, mask_text

        print(mask_text(traceback.format_exc(), command_secrets(sys.argv if argv is None else argv)),
              end="", file=sys.stderr)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    run()
