"""Where data lives: any fsspec URL (local, file://, memory://, http(s)://, s3://, hdfs://) or glob.

fsspec gives one interface to every storage; this module only expands globs and folders into a
sorted list of files, opens them with compression inferred from the extension, and turns the
storage's own exceptions into errors that name the URL. Credentials for s3:// come from
``storage_options`` (``endpoint_url``, ``key``, ``secret``) or the usual ``AWS_*`` variables.
"""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
from fsspec.core import OpenFile, url_to_fs

from sora.errors import SoraError

_NEEDS = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "hdfs": "pyarrow (with a Hadoop install: HADOOP_HOME, libhdfs)",
    "http": "aiohttp",
    "https": "aiohttp",
}
GLOB_CHARS = "*?["


def protocol(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def filesystem(url: str, storage_options: dict[str, Any] | None = None):
    """The fsspec file system for ``url`` and the path inside it."""
    try:
        return url_to_fs(url, **(storage_options or {}))
    except ImportError as e:
        need = _NEEDS.get(protocol(url), str(e))
        raise SoraError(f"{url}: reading {protocol(url)}:// needs {need} ({e})") from None
    except (ValueError, TypeError) as e:
        raise SoraError(f"{url}: cannot open this storage ({e}); check data.storage_options") from None
    except OSError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = (
            (
                " (hdfs:// uses pyarrow's HadoopFileSystem: it needs Java and Hadoop's libhdfs, with JAVA_HOME, "
                "HADOOP_HOME and CLASSPATH set)"
            )
            if protocol(url) == "hdfs"
            else ""
        )
        raise SoraError(f"{url}: cannot connect: {first}{hint}") from None


def list_files(url: str, storage_options: dict[str, Any] | None = None, *, dirs: bool = False) -> list[str]:
    """Every file ``url`` names: itself, the files a glob matches, or (``dirs``) the files under a folder.

    Returns full URLs (protocol included) in sorted order, so shards are read in a stable order.
    """
    fs, path = filesystem(url, storage_options)
    try:
        if any(c in path for c in GLOB_CHARS):
            paths = sorted(p for p in fs.glob(path) if not fs.isdir(p))
        elif fs.isdir(path):
            if not dirs:
                raise SoraError(f"{url}: is a folder; name files or a glob (e.g. {url.rstrip('/')}/*.csv)")
            paths = sorted(fs.find(path))
        elif fs.exists(path):
            paths = [path]
        else:
            paths = []
    except SoraError:
        raise
    except FileNotFoundError:
        paths = []
    except PermissionError as e:
        raise SoraError(f"{url}: permission denied ({e})") from None
    except OSError as e:
        raise SoraError(f"{url}: cannot list files ({e})") from None
    if not paths:
        raise SoraError(f"{url}: no such file (nothing matches)")
    return [fs.unstrip_protocol(p) if protocol(url) != "file" else p for p in paths]


def is_dir(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    try:
        return not any(c in path for c in GLOB_CHARS) and fs.isdir(path)
    except OSError:
        return False


def open_file(
    url: str, storage_options: dict[str, Any] | None = None, *, compression: str | None = "infer"
) -> OpenFile:
    """An fsspec OpenFile (use it as a context manager) in binary mode; .gz/.bz2/.xz/.zst decompress."""
    try:
        return fsspec.open(url, "rb", compression=compression, **(storage_options or {}))
    except ImportError as e:
        raise SoraError(f"{url}: reading {protocol(url)}:// needs {_NEEDS.get(protocol(url), e)}") from None


def read_bytes(url: str, storage_options: dict[str, Any] | None = None, *, compression: str | None = "infer") -> bytes:
    try:
        with open_file(url, storage_options, compression=compression) as f:
            return f.read()
    except FileNotFoundError:
        raise SoraError(f"{url}: no such file") from None
    except OSError as e:
        raise SoraError(f"{url}: cannot read ({e})") from None


def display_name(url: str) -> str:
    """A short name for messages: the path for local files, the URL otherwise."""
    return url if protocol(url) != "file" else url.removeprefix("file://")


def strip_compression(name: str) -> str:
    for ext in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def basename(url: str) -> str:
    return posixpath.basename(url.rstrip("/"))
