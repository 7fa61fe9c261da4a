"""The dataset cache: ``$SORA_HOME`` (default ``~/.cache/sora``), one folder per built-in dataset.

A folder is written beside its final place and renamed into it, with a ``MANIFEST.json`` that
records a SHA-256 of every file; a folder whose manifest checks out is complete, so fetching is
idempotent and an interrupted fetch leaves nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sora.errors import SoraError

MANIFEST = "MANIFEST.json"


def sora_home() -> Path:
    return Path(os.environ.get("SORA_HOME") or Path.home() / ".cache" / "sora").expanduser()


def dataset_dir(name: str) -> Path:
    return sora_home() / "datasets" / name


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def is_complete(folder: Path, *, verify: bool = False) -> bool:
    """True when ``folder`` has a manifest; with ``verify``, every checksum must match too."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    if not verify:
        return True
    try:
        recorded = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError):
        return False
    for rel, digest in recorded.items():
        path = folder / rel
        if not path.is_file() or sha256(path) != digest:
            return False
    return True


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock (``.NAME.lock`` beside ``folder``) held while the folder is built."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def building(folder: Path, info: dict | None = None, extra: dict | None = None) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it is checksummed and renamed to ``folder``.

    ``extra`` is read after the body runs, so facts learnt while filling go into the manifest too.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        files = {str(p.relative_to(tmp)): sha256(p) for p in _files(tmp)}
        if not files:
            raise SoraError(f"{folder.name}: fetching produced no files")
        manifest = {"name": folder.name, "files": files, **(info or {}), **(extra or {})}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache is readable like any folder
        if folder.exists():  # a stale or incomplete folder from an earlier attempt
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file beside its place and rename it there: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
