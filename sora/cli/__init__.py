"""The ``sora`` command. Each command group lives in its own module and adds its commands to ``app``
(``sora.cli.app``) when imported: importing this package imports them all, so ``main`` knows every command."""

from sora.cli import analyze, compress, data, export, hf, inspect, predict, run, serve, train  # noqa: F401  each adds its commands
from sora.cli.app import app, main

__all__ = ["app", "main"]
