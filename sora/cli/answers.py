"""``sora predict`` for a question-answering model: one answer per record of (question, context) pairs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from sora.atomic import staged_file
from sora.errors import SoraError
from sora.models import load_meta, load_model, load_tokenizer
from sora.tasks.answering import answer_question, window_settings


def predict_answers(model_dir: Path, input_: Path, output: Path, question: str, context: str) -> tuple[int, int]:
    """Write one JSON line per record: {"answer", "start", "end", "score"} or {"line", "error"}; (answered, failed)."""
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    max_len, stride = window_settings(load_meta(model_dir))
    answered = failed = 0
    with staged_file(output) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for line, record in _records(input_):
            try:
                q, c = record.get(question), record.get(context)
                if not isinstance(q, str) or not isinstance(c, str):
                    raise SoraError(f"needs text fields '{question}' and '{context}'")
                found = answer_question(model, tokenizer, q, c, max_len=max_len, stride=stride)
                row = {"answer": found.text, "start": found.start, "end": found.end, "score": round(found.score, 4)}
                answered += 1
            except SoraError as e:
                row, failed = {"line": line, "error": str(e)}, failed + 1
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    if answered + failed == 0:
        raise SoraError(f"{input_}: no records to answer")
    return answered, failed


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line, record) of a JSONL or CSV/TSV file."""
    if path.suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","), start=2):
                yield i, row
        return
    if path.suffix not in (".jsonl", ".json"):
        raise SoraError(f"{path}: a question-answering model reads JSONL or CSV/TSV records (question, context)")
    with open(path, encoding="utf-8") as f:
        for i, text in enumerate(f, start=1):
            if text.strip():
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as e:
                    record = {"_error": str(e)}
                yield i, record if isinstance(record, dict) else {}
