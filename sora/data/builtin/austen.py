"""Jane Austen's six novels, from the Debian package r-cran-janeaustenr, read without R.

The package stores R objects in a lazy-load database: ``Rdata.rdx`` (compressed) indexes
``Rdata.rdb``, where each object is zlib-compressed after a 4-byte length. The PyPI package
``rdata`` parses R's serialisation format. The package is downloaded and unpacked with
``dpkg -x``, never installed (installing it would pull in R).
"""

from __future__ import annotations

import gzip
import json
import tempfile
import warnings
import zlib
from pathlib import Path

from sora.data.builtin.entry import Builtin, Raw
from sora.data.builtin.system import unpack_debian
from sora.data.config import DataConfig
from sora.data.table import Table
from sora.errors import SoraError

PACKAGE = "r-cran-janeaustenr"
DB = "usr/lib/R/site-library/janeaustenr/data/Rdata"
# publication order, as janeaustenr::austen_books() gives them
BOOKS = [
    ("sensesensibility", "Sense & Sensibility"),
    ("prideprejudice", "Pride & Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
]


def _parse(raw: bytes):
    import rdata  # 1.2 s to import: only this dataset needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns "assumed RDS" for the headerless payloads
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def _decompress(raw: bytes) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    return zlib.decompress(raw[4:])  # R's own: a 4-byte length, then zlib


def read_books(root: Path) -> dict[str, list[str]]:
    index = _parse(_decompress((root / f"{DB}.rdx").read_bytes()))
    rdb = (root / f"{DB}.rdb").read_bytes()
    books = {}
    for name, (offset, length) in index["variables"].items():
        offset, length = int(offset), int(length)
        books[str(name)] = [str(line) for line in _parse(zlib.decompress(rdb[offset + 4 : offset + length]))]
    return books


def fetch_austen(folder: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        books = read_books(unpack_debian(PACKAGE, Path(tmp), "austen"))
    missing = [k for k, _ in BOOKS if k not in books]
    if missing:
        raise SoraError(f"austen: {PACKAGE} lacks {missing}")
    with open(folder / "books.jsonl", "w", encoding="utf-8") as f:
        for key, title in BOOKS:
            f.write(json.dumps({"book": title, "text": "\n".join(books[key])}, ensure_ascii=False) + "\n")
    return {
        "package": PACKAGE,
        "lines": sum(len(books[k]) for k, _ in BOOKS),
        "characters": sum(len("\n".join(books[k])) for k, _ in BOOKS),
    }


def load_austen(folder: Path, cfg: DataConfig, task: str) -> Raw:
    rows = [json.loads(line) for line in open(folder / "books.jsonl", encoding="utf-8")]
    table = Table(
        {"book": [r["book"] for r in rows], "text": [r["text"] for r in rows]},
        [f"{folder / 'books.jsonl'}:{i + 1}" for i in range(len(rows))],
    )
    return Raw({"all": table}, {"text": "text"})


AUSTEN = Builtin(
    name="austen",
    task="lm",
    tasks=("lm",),
    description="Jane Austen's six novels (73k lines, 4.03 M characters), one corpus for language modelling",
    origin=f"Debian package {PACKAGE} (apt-get download + dpkg -x; R lazy-load DB read with rdata)",
    fetch_into=fetch_austen,
    load=load_austen,
)
