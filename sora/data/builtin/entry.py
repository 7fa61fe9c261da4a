"""What a built-in dataset is: how to fetch it into the cache, and how to read it back as tables.

Its own module so that each dataset's module can define an entry while the package (``__init__``)
imports them all to list them, without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sora.data import cache
from sora.data.config import DataConfig
from sora.data.table import Table


@dataclass
class Raw:
    """What a source yields before splitting: one table (``all``) or the splits it comes with."""

    tables: dict[str, Table]
    columns: dict[str, str] = field(default_factory=dict)  # role -> column defaults
    label_names: list[str] | None = None
    group: str | None = None  # column that must not straddle splits, by default


@dataclass(frozen=True)
class Builtin:
    name: str
    task: str  # the default task
    tasks: tuple[str, ...]
    description: str
    origin: str  # where the data comes from, for `sora data list`
    fetch_into: Callable[[Path], dict]  # fill an empty folder; returns facts for the manifest
    load: Callable[[Path, DataConfig, str], Raw]  # (cache folder, config, task) -> tables
    layout: int = 1  # bumped when what fetch_into writes changes; a cache of another layout is fetched again
    requires: Callable[[], None] | None = None  # raises naming a missing system package fetch_into needs (cheap)

    @property
    def folder(self) -> Path:
        return cache.dataset_dir(self.name)
