"""The typer application and the one place bad input becomes a message instead of a traceback.

Command modules import what they use at the top of the file, not inside the command functions: the
import graph a reader sees is then the real one, and laziness bought nothing here. ``sora --help``
loads torch and nearly all of Sora either way (a recipe holds every stage's config section); the
modules only commands use (interop, outdir, the stages) measured about 1% of its start-up
(``python -X importtime``, 2 CPU cores: 0.2 s of 21-25 s under load), within run-to-run noise of
the wall time. Libraries that are slow to import and serve one feature (matplotlib, scikit-learn,
FSDP...) are still imported where they are used (tests/test_layers.py lists them and why).
"""

from __future__ import annotations

import sys
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from sora.errors import SoraError, SoraWarning, first_line

app = typer.Typer(
    name="sora",
    help="Transformer models as explicit particles: build, train, analyze, compress, ship.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def main(argv: list[str] | None = None) -> None:
    try:
        with warnings.catch_warnings():  # restores the caller's warning settings afterwards
            warnings.simplefilter("always", SoraWarning)
            warnings.showwarning = _show_warning
            app(args=argv, standalone_mode=False)
    except SoraError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except FileNotFoundError as e:
        err_console.print(f"[bold red]error:[/] file not found: {escape(str(e.filename or e))}", soft_wrap=True)
        sys.exit(2)
    except OSError as e:  # the file system refused: no permission, read-only, full, a file where a folder goes
        err_console.print(f"[bold red]error:[/] {escape(_refused(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:
        if _is_usage_error(e):  # an unknown command or option, a missing argument
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, typer.Abort) or type(e).__name__ == "Abort":
            sys.exit(1)
        raise


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A SoraWarning is one line, like an error; other warnings keep Python's format."""
    if issubclass(category, SoraWarning):
        err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _refused(e: OSError) -> str:
    """Where the file system refused and why, on one line: ``/runs/new: Permission denied``."""
    return f"{e.filename}: {e.strerror}" if e.filename is not None and e.strerror else first_line(e)


def _is_usage_error(e: Exception) -> bool:
    """click's ``ClickException``, from click itself or from the copy typer 0.2x vendors (a different class)."""
    return callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int)
