"""Examples as columns, each remembering where it came from, and the record of rows skipped as bad.

A ``Table`` is what every reader returns and what splitting works on: plain lists or numpy arrays
by column name, plus ``where`` ("file:line") for every row so that a later error (an unknown label,
an empty text) can still name the line it came from.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sora.errors import SoraError, SoraWarning


class SkippedRowsWarning(SoraWarning):
    """Rows were skipped under ``on_error: skip``; the message counts them and names the first."""


_NESTED = (list, tuple, dict, np.ndarray)  # a row value that is not one value: never a text or a label


def missing(value: Any) -> bool:
    """No value: null, or NaN (what JSON, Parquet and pandas write for one)."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def text_problem(value: Any, column: str, role: str, *, empty_ok: bool = False) -> str | None:
    """Why a row's ``value`` cannot be its text, or None: missing, a list or mapping (str() would quietly
    make "[1, 2]" a text), or empty: blank is what a CSV writes for a missing value (pandas reads it as
    NaN), and an example with no input teaches nothing (``empty_ok``: a language model's empty document
    adds nothing and harms nothing)."""
    if missing(value):
        return f"missing value for '{column}' ({role})"
    if isinstance(value, _NESTED):
        return f"'{column}' ({role}) holds a {type(value).__name__}, not text"
    if not empty_ok and not str(value).strip():
        return f"empty text in column '{column}' ({role})"
    return None


def label_problem(value: Any, column: str) -> str | None:
    """Why a row's ``value`` cannot be its label, or None: missing or blank, or not one value."""
    if missing(value) or str(value).strip() == "":
        return f"missing label in column '{column}'"
    if isinstance(value, _NESTED):
        return f"label {value!r} in column '{column}' is not one value"
    return None


@dataclass
class Table:
    columns: dict[str, Any]
    where: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # e.g. sample rate of an audio column

    def __len__(self) -> int:
        return len(self.where)

    def take(self, indices: Sequence[int] | np.ndarray) -> Table:
        idx = np.asarray(indices, dtype=np.int64)
        cols = {k: v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx] for k, v in self.columns.items()}
        return Table(cols, [self.where[i] for i in idx], dict(self.info))

    def require(self, column: str, role: str, source: str) -> Any:
        """The column playing ``role``; a clear error when the source has no such column (an empty
        table, such as an empty file's, has no columns and no rows: nothing is missing)."""
        if column not in self.columns and not len(self):
            return []
        if column not in self.columns:
            have = ", ".join(sorted(self.columns)) or "none"
            raise SoraError(
                f"{source}: missing column '{column}' for role '{role}' (columns: {have}); "
                f"map another with data.columns.{role}"
            )
        return self.columns[column]

    @staticmethod
    def concat(tables: list[Table]) -> Table:
        tables = [t for t in tables if len(t)]
        if not tables:
            return Table({}, [])
        keys = set(tables[0].columns)
        for t in tables[1:]:
            if set(t.columns) != keys:
                raise SoraError(
                    f"{t.where[0]}: columns {sorted(t.columns)} differ from {tables[0].where[0]}: {sorted(keys)}"
                )
        cols = {}
        for k in tables[0].columns:
            parts = [t.columns[k] for t in tables]
            cols[k] = np.concatenate(parts) if isinstance(parts[0], np.ndarray) else [x for p in parts for x in p]
        info = {}
        for t in tables:
            info.update(t.info)
        return Table(cols, [w for t in tables for w in t.where], info)


class RowErrors:
    """Bad rows: fail at the first (naming file:line), or skip them and warn once with the count."""

    def __init__(self, on_error: str = "fail"):
        self.on_error = on_error
        self.skipped: list[str] = []

    def bad(self, where: str, reason: str) -> None:
        message = f"{where}: {reason}"
        if self.on_error != "skip":
            raise SoraError(message + " (set data.on_error: skip to skip bad rows)")
        self.skipped.append(message)

    def report(self, what: str) -> None:
        if self.skipped:
            warnings.warn(
                f"{what}: skipped {len(self.skipped)} bad row(s); first: {self.skipped[0]}",
                SkippedRowsWarning,
                stacklevel=3,
            )
