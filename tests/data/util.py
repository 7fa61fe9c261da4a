"""Small data for the data tests: labelled sentences of varied length, written as CSV/TSV."""

from __future__ import annotations

from pathlib import Path

POSITIVE = [
    "a fine and moving film",
    "great acting and a smart script",
    "lovely, warm and funny",
    "a joy from start to finish",
    "sharp writing, brilliant cast",
    "wonderful and touching",
]
NEGATIVE = [
    "a dull and tedious mess",
    "boring plot, flat acting",
    "badly written and too long",
    "a tiresome waste of time",
    "clumsy, loud and empty",
    "awful pacing and weak jokes",
]


def sentiment_rows(n: int = 60) -> list[tuple[str, str]]:
    """(label, text) rows with a varied length, balanced between the two labels."""
    rows = []
    for i in range(n):
        pool, label = (POSITIVE, "pos") if i % 2 == 0 else (NEGATIVE, "neg")
        words = " ".join(pool[(i // 2 + k) % len(pool)] for k in range(1 + i % 4))
        rows.append((label, f"{words} number {i}"))
    return rows


def write_csv(path: Path, rows=None, delimiter: str = ",") -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(["label", "text"])
        w.writerows(rows if rows is not None else sentiment_rows())
    return path
