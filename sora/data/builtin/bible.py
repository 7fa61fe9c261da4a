"""English-Spanish verse pairs: King James Bible and Reina-Valera 1909 (Debian sword-text-kjv and
sword-text-sparv), read with pysword and aligned by book, chapter and verse.

Reading every verse through pysword takes about a minute (the two languages are read in parallel),
so the pairs are extracted once into the cache. Splits are grouped by chapter by default: a held-out
chapter's verses are all unseen, which keeps near-duplicate neighbouring verses out of the test set.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pysword.modules import SwordModules

from sora.data.builtin.entry import Builtin, Raw
from sora.data.builtin.system import require_path
from sora.data.config import DataConfig
from sora.data.formats import iter_rows, rows_to_table
from sora.data.table import RowErrors

SWORD = Path("/usr/share/sword")
MODULES = {"engKJV2006eb": "sword-text-kjv", "spaRV1909eb": "sword-text-sparv"}


def _read_module(module: str, books: list[str] | None = None) -> dict[str, list[list[str]]]:
    """{book: [chapter: [verse text]]} for one SWORD module (every book, or those named)."""
    modules = SwordModules(str(SWORD))
    modules.parse_modules()
    bible = modules.get_bible_from_module(module)
    out = {}
    for testament in bible.get_structure().get_books().values():
        for book in testament:
            if books is not None and book.name not in books:
                continue
            verses = list(bible.get_iter(books=[book.name], clean=True))
            chapters, start = [], 0
            for n in book.chapter_lengths:
                chapters.append(verses[start : start + n])
                start += n
            out[book.name] = chapters
    return out


def _clean(verse: str) -> str:
    return " ".join(verse.replace("¶", " ").split())


def require_modules() -> None:
    """The SWORD modules the pairs are read from, or an error naming the Debian package to install."""
    for module, package in MODULES.items():
        require_path(SWORD / "mods.d" / f"{module}.conf", package, "bible_en_es")


def extract_pairs(books: list[str] | None = None, workers: int = 2) -> tuple[list[dict], int]:
    """Aligned verse pairs (and the number of verses missing in either language)."""
    require_modules()
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:  # one language per process: half the wall time
            en, es = pool.map(_read_module, list(MODULES), [books, books])
    else:
        en, es = (_read_module(m, books) for m in MODULES)
    pairs, skipped = [], 0
    for book, chapters in en.items():
        other = es.get(book, [])
        for c, verses in enumerate(chapters, 1):
            spanish = other[c - 1] if c <= len(other) else []
            for v, text in enumerate(verses, 1):
                source, target = _clean(text), _clean(spanish[v - 1]) if v <= len(spanish) else ""
                if not source or not target:
                    skipped += 1
                    continue
                pairs.append({"source": source, "target": target, "book": book, "chapter": f"{book} {c}", "verse": v})
    return pairs, skipped


def fetch_bible(folder: Path) -> dict:
    pairs, skipped = extract_pairs()
    with open(folder / "pairs.jsonl", "w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps(pair, ensure_ascii=False) + "\n")
    return {"packages": list(MODULES.values()), "pairs": len(pairs), "unaligned_verses": skipped}


def load_bible(folder: Path, cfg: DataConfig, task: str) -> Raw:
    table = rows_to_table(iter_rows(str(folder / "pairs.jsonl"), "jsonl", RowErrors("fail")))
    return Raw({"all": table}, {"source": "source", "target": "target"}, group="chapter")


BIBLE_EN_ES = Builtin(
    name="bible_en_es",
    task="seq2seq",
    tasks=("seq2seq",),
    description="31,084 English-Spanish verse pairs (KJV / Reina-Valera 1909), split by chapter",
    origin="Debian packages sword-text-kjv, sword-text-sparv (read with pysword)",
    fetch_into=fetch_bible,
    load=load_bible,
    requires=require_modules,
)
