"""The ``sora`` command. Each command group lives in its own module and registers itself here."""

from sora.cli.app import app, main

__all__ = ["app", "main"]
