"""Writing a folder beside its place, then renaming it in: a reader sees the old folder or the new one.

``staged_dir(target)`` is the one procedure every writer of a Sora folder uses. It fills a hidden
sibling, ``.NAME.sora-tmp-PID-XXXXXXXX``; on success the new folder and the previous ``target`` (if
any) swap places in one step (Linux's renameat2; elsewhere the previous one is first renamed to
``.NAME.sora-old-PID-XXXXXXXX``) and the previous one is removed; on any exception, Ctrl-C
included, the sibling is removed. A process killed mid-save leaves a sibling behind: ``clean_stale``
removes the ones whose writer is gone the next time the same target is written (and puts a replaced
folder back if the kill came between the fallback's two renames).

Nothing here follows a symbolic link: a link is renamed or unlinked itself, never its target.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import shutil
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SHORT_NAME = 100  # characters of the target's name kept in a sibling's name (file names stop at 255 bytes)
STAGED = re.compile(r"^\.(?P<name>.+)\.sora-(?P<role>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
# What earlier versions left: tempfile.mkdtemp(prefix=".NAME.") (8 characters, mode 0700), a replaced
# folder ".NAME.old-PID", and a checkpoint's ".staging-XXXXXXXX".
LEGACY_TMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}$")
LEGACY_OLD = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)$")
LEGACY_STAGING = re.compile(r"^\.staging-[a-z0-9_]{8}$")
AT_FDCWD, RENAME_EXCHANGE = -100, 2  # from <fcntl.h> and <linux/fs.h>
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``target`` to fill; on success it becomes ``target``.

    Folders created for the target's parent are removed again if the write fails, so a failed
    command leaves nothing behind.
    """
    target = Path(os.path.abspath(target))
    made = make_dirs(target.parent)
    clean_stale(target.parent, target.name)
    tmp = None
    try:
        tmp = _new_sibling(target)
        yield tmp
        _swap_in(tmp, target)
    except BaseException:
        if tmp is not None:
            remove_path(tmp)
        remove_made(made)
        raise


@contextmanager
def staged_file(target: str | Path) -> Iterator[Path]:
    """Yield a hidden sibling path of file ``target`` to write; on success it is renamed onto ``target``.

    The file-sized twin of ``staged_dir``: a reader sees the old file or the new one, never half of one,
    and a failed write (Ctrl-C included) leaves no sibling behind.
    """
    target = Path(os.path.abspath(target))
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise


def _new_sibling(target: Path) -> Path:
    while True:
        tmp = _sibling(target, "tmp")
        try:
            os.mkdir(tmp)  # the umask decides its mode, as for any folder the user makes
            return tmp
        except FileExistsError:
            continue
        except OSError as e:  # name the folder the user asked for, not the hidden sibling
            raise OSError(e.errno, e.strerror, str(target)) from None


def _sibling(target: Path, role: str) -> Path:
    return target.with_name(f".{target.name[:SHORT_NAME]}.sora-{role}-{os.getpid()}-{secrets.token_hex(4)}")


def _swap_in(new: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(new, target)
        return
    if _exchange(new, target):  # one step: `new` now holds what `target` held
        remove_path(new)
        return
    old = _sibling(target, "old")
    os.rename(target, old)
    os.rename(new, target)  # a kill between these two renames: clean_stale puts `old` back
    remove_path(old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system or file system cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    return renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def remove_path(path: str | Path) -> None:
    """Delete a file, a link (not what it points to) or a folder tree; whatever is already gone is fine."""
    path = Path(path)
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)  # unlinks the links inside, never follows them
    except FileNotFoundError:
        pass


def make_dirs(path: str | Path) -> list[Path]:
    """``mkdir -p path``, returning the folders it created, outermost first."""
    path = Path(path)
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
    return missing[::-1]


def remove_made(made: list[Path]) -> None:
    """Remove the folders ``make_dirs`` created, innermost first, where they are still empty."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            return


def clean_stale(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the staging siblings in ``folder`` that a killed writer left, for target ``name`` (or any).

    Only folders named as Sora names them, whose writing process is gone; a replaced folder whose
    target is missing is renamed back instead. Returns what was removed or restored.
    """
    folder = Path(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    done = []
    for entry in entries:
        found = _stale(entry, name)
        if found is None:
            continue
        target_name, role = found
        target = folder / target_name
        if role == "old" and target_name and not os.path.lexists(target):
            os.rename(entry.path, target)
        else:
            remove_path(entry.path)
        done.append(Path(entry.path))
    return done


def is_staging_name(name: str) -> bool:
    """A name Sora gives its hidden siblings (any target, this version or an earlier one)."""
    return bool(STAGED.match(name) or LEGACY_OLD.match(name) or LEGACY_STAGING.match(name) or LEGACY_TMP.match(name))


def _stale(entry: os.DirEntry, name: str | None) -> tuple[str, str] | None:
    """(target name, "tmp" or "old") when ``entry`` is a leftover of a dead writer, else None."""
    if not entry.is_dir(follow_symlinks=False):
        return None
    if m := STAGED.match(entry.name):
        if name is not None and m["name"] != name[:SHORT_NAME]:
            return None
        full = name if name is not None else m["name"] if len(m["name"]) < SHORT_NAME else None
        if _alive(int(m["pid"])) or (full is None and m["role"] == "old"):  # never drop a folder it can't put back
            return None
        return full or "", m["role"]
    if m := LEGACY_OLD.match(entry.name):
        return None if (name is not None and m["name"] != name) or _alive(int(m["pid"])) else (m["name"], "old")
    if name is None and LEGACY_STAGING.match(entry.name):
        return "", "tmp"
    if (m := LEGACY_TMP.match(entry.name)) and (name is None or m["name"] == name):
        private = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) == 0o700  # what mkdtemp made
        return (m["name"], "tmp") if private else None
    return None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may still be writing (this process counts: its writes are in progress)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
