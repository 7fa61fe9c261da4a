"""The records of a prediction input, read lazily: lines of a text file, rows of a CSV/TSV/JSONL/Parquet file
(one column; a question-answering model's two: question and context), or the images or WAV files of a folder
(one record per file, sorted by name).

Rows come from sora.data.formats, which names each by file:line; a row it cannot read (bad JSON, a wrong
number of fields, undecodable bytes) becomes a record with an error in its place, so that the output says
which line failed and the rest still runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sora.data.formats import IMAGE_EXTENSIONS, infer_format, iter_rows
from sora.data.table import RowErrors
from sora.errors import SoraError

ROW_FORMATS = ("text", "csv", "tsv", "jsonl", "parquet")
PAIR_FORMATS = ("csv", "tsv", "jsonl", "parquet")  # rows with named columns: a question and its context
FOLDER_FILES = {"image": IMAGE_EXTENSIONS, "audio": (".wav",)}
FOLDER_WORDS = {"image": "images", "audio": "WAV files"}
MODEL_WORDS = {"text": "a text model", "image": "an image model", "audio": "an audio model"}


@dataclass
class Record:
    where: dict[str, Any]  # {"line": N} or {"file": "name"}: how the output names the record
    value: Any = None  # what the predictor reads: a text, a file's path, or {"question", "context"}
    shown: Any = None  # the output's "input": the text, the file's name, or the question
    error: str | None = None  # why the record could not be read


def read_records(path: Path, kind: str, column: str = "text", pair: tuple[str, str] | None = None) -> Iterator[Record]:
    """The records of ``path`` for a model whose input is ``kind`` (text, image or audio); ``pair``: the question
    and context columns, for a question-answering model (records of ``{"question", "context"}``)."""
    if path.is_dir():
        if kind == "text":
            raise SoraError(f"{path}: a folder; a text model reads a .txt, .csv, .tsv or .jsonl file")
        return folder_records(path, kind)
    if not path.exists():
        raise SoraError(f"{path}: no such file")
    if kind != "text":
        raise SoraError(f"{path}: {MODEL_WORDS[kind]} reads a folder of {FOLDER_WORDS[kind]}, not a file")
    fmt = infer_format(str(path))
    if pair is not None and fmt not in PAIR_FORMATS:
        raise SoraError(f"{path}: a question-answering model reads CSV/TSV, JSONL or Parquet rows (question, context)")
    if fmt not in ROW_FORMATS:
        raise SoraError(f"{path}: a {fmt} file; give text lines (.txt), CSV/TSV or JSONL")
    return row_records(path, fmt, column, pair)


def folder_files(path: Path, kind: str) -> list[Path]:
    """The folder's files of the model's kind, at any depth, sorted by their path inside it."""
    files = sorted(
        (p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(FOLDER_FILES[kind])),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    if not files:
        raise SoraError(f"{path}: no {FOLDER_WORDS[kind]} in this folder ({', '.join(FOLDER_FILES[kind])})")
    return files


def folder_records(path: Path, kind: str) -> Iterator[Record]:
    for file in folder_files(path, kind):
        name = file.relative_to(path).as_posix()
        yield Record({"file": name}, file, name)


class _Collected(RowErrors):
    """Bad rows kept in order, to be written in their place instead of failing the file."""

    def __init__(self):
        super().__init__("skip")
        self.pending: list[tuple[str, str]] = []

    def bad(self, where: str, reason: str) -> None:
        self.pending.append((where, reason))

    def drain(self) -> Iterator[Record]:
        while self.pending:
            where, reason = self.pending.pop(0)
            yield Record({"line": line_of(where)}, error=reason)


def row_records(path: Path, fmt: str, column: str, pair: tuple[str, str] | None = None) -> Iterator[Record]:
    errors = _Collected()
    for where, row in iter_rows(str(path), fmt, errors):
        yield from errors.drain()  # the bad rows the reader passed over before this one
        if pair is not None:
            yield _pair_record(line_of(where), row, *pair)
        else:
            yield _row_record(line_of(where), row, column if fmt != "text" else "text")
    yield from errors.drain()


def _row_record(line: int | str, row: dict, column: str) -> Record:
    problem = _not_a_text(row, column, "--column")
    if problem is not None:
        return Record({"line": line}, error=problem)
    return Record({"line": line}, row[column], row[column])


def _pair_record(line: int | str, row: dict, question: str, context: str) -> Record:
    """A question-answering record: ``{"question", "context"}`` from its two columns; the question is shown."""
    for column, option in ((question, "--question-column"), (context, "--context-column")):
        problem = _not_a_text(row, column, option)
        if problem is not None:
            return Record({"line": line}, error=problem)
    return Record({"line": line}, {"question": row[question], "context": row[context]}, row[question])


def _not_a_text(row: dict, column: str, option: str) -> str | None:
    """Why ``row[column]`` is not a text to predict, or None."""
    if column not in row:
        names = ", ".join(repr(c) for c in list(row)[:8])
        return f"no column {column!r} (this row has {names}); choose one with {option}"
    value = row[column]
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        return f"column {column!r} holds {kind}, not a text"
    return None


def line_of(where: str) -> int | str:
    """``file:12`` -> 12 (``file:row 12``, Parquet's, too)."""
    tail = where.rsplit(":", 1)[-1].removeprefix("row ").strip()
    return int(tail) if tail.isdigit() else tail
