"""The typer application and the one place bad input becomes a message instead of a traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from sora.errors import SoraError

app = typer.Typer(
    name="sora",
    help="Transformer models as explicit particles: build, train, analyze, compress, ship.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _register_commands() -> None:
    # Imported for their side effect: each module adds its commands to `app`.
    from sora.cli import analyze, compress, data, hf, inspect, run, train  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    try:
        app(args=argv, standalone_mode=False)
    except SoraError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except FileNotFoundError as e:
        err_console.print(f"[bold red]error:[/] file not found: {escape(str(e.filename or e))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click's usage errors come here when standalone_mode is off
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
