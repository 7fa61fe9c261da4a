"""Files a model folder names, kept inside that folder.

A model folder (Sora's or Hugging Face's) is read by name: ``config.json``, the weights, a shard
an index lists, ``vocab.txt``. A name like ``../x`` or ``/etc/passwd``, or a symbolic link that
points elsewhere, would make Sora read (and an import copy) a file the user never gave it, so
every reader of a model folder asks ``inside`` for the path first.

One layout is allowed to point out: the Hugging Face hub cache, whose ``snapshots/REV/`` files are
links into the same repository's ``blobs/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sora.errors import SoraError


def inside(folder: str | Path, name: str | Path) -> Path:
    """``folder / name``, or an error when it resolves outside ``folder`` (``..``, absolute, a link out)."""
    folder = Path(folder)
    path = folder / name
    root, target = folder.resolve(), path.resolve()
    if not any(target.is_relative_to(allowed) for allowed in _allowed_roots(root)):
        how = "is a link to" if path.is_symlink() else "resolves to"
        raise SoraError(
            f"{path}: {how} {target}, outside the model folder {folder}; "
            "Sora reads only files inside the folder it is given"
        )
    return path


def _allowed_roots(root: Path) -> list[Path]:
    roots = [root]
    if root.parent.name == "snapshots":  # hub cache: REPO/snapshots/REV/* -> REPO/blobs/*
        roots.append(root.parent.parent / "blobs")
    return roots


def existing_file(folder: str | Path, name: str | Path) -> Path | None:
    """``inside(folder, name)`` when it exists (None when it does not); an error when it is not a file."""
    path = inside(folder, name)
    if not path.exists():
        if path.is_symlink():
            raise SoraError(f"{path}: a link to {path.readlink()}, which does not exist")
        return None
    if not path.is_file():
        raise SoraError(f"{path}: expected a file, found a folder or a special file")
    return path


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read a megabyte at a time (weights and archives run to hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
