"""Atomic folder replacement: a reader sees the old folder or the new one, never half of either."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_dir(new: Path, target: Path) -> None:
    """Move the finished folder ``new`` to ``target``, replacing what was there."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)
