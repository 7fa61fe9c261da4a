"""Predicting a stream of records into JSON lines, a chunk at a time, so that an input larger than memory
runs in constant memory (what ``sora predict`` does).

Each record becomes one line, in input order: ``{"line": N, "input": ..., <prediction>}`` (a folder's records
carry ``"file"`` instead of ``"line"``), or ``{"line": N, "input": ..., "error": "..."}`` when the record could
not be read or predicted; the rest still run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, TextIO

from sora.deploy.predictor import Predictor
from sora.deploy.records import Record

CHUNK = 1024  # records read, predicted and written together


@dataclass
class Counts:
    predicted: int = 0
    failed: int = 0
    first_failure: str | None = None  # "line 3: empty text"

    @property
    def total(self) -> int:
        return self.predicted + self.failed


def predict_stream(
    predictor: Predictor,
    records: Iterable[Record],
    out: TextIO,
    *,
    batch_size: int = 32,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> Counts:
    """Predict ``records`` into ``out``, one JSON line each; ``progress(n)`` after every chunk of n."""
    counts = Counts()
    records = iter(records)
    while batch := list(islice(records, chunk)):
        readable = [r for r in batch if r.error is None]
        results = iter(predictor.predict([r.value for r in readable], batch_size, errors="return"))
        for record in batch:
            result = {"error": record.error} if record.error is not None else next(results)
            line = {**record.where, **({"input": record.shown} if record.shown is not None else {}), **result}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            _count(counts, record, result)
        if progress is not None:
            progress(len(batch))
    return counts


def _count(counts: Counts, record: Record, result: dict) -> None:
    if "error" not in result:
        counts.predicted += 1
        return
    counts.failed += 1
    if counts.first_failure is None:
        key, value = next(iter(record.where.items()))
        counts.first_failure = f"{key} {value}: {result['error']}"
