"""What every command that writes ``--out`` shares: the ``--force`` option and the ownership check."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from sora.cli.app import err_console
from sora.outdir import claim_out


def force_option():
    return typer.Option(
        False,
        "--force",
        help="write --out even when it holds something else: what is there is "
        "replaced (a link is replaced, not what it points to)",
    )


def claim(out: Path, kind: str, force: bool, *, resume: bool = False, reads: tuple = ()) -> Path:
    """``sora.outdir.claim_out`` for a command: refuse with one line, or say what will be replaced."""
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone decides (and clears, with --force)
        return out
    return claim_out(out, kind, force=force, resume=resume, reads=tuple(r for r in reads if r is not None), say=note)


def note(message: str) -> None:
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)
