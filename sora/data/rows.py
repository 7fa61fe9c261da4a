"""Checking a source's rows before they become examples: a text where one is needed, one label per row,
the label names and each row's label id. A bad row fails naming file:line, or is skipped and counted,
as ``data.on_error`` says (sora.data.table.RowErrors)."""

from __future__ import annotations

import numpy as np

from sora.data.table import RowErrors, Table, label_problem, text_problem
from sora.errors import SoraError


def skipped_note(errors: RowErrors) -> str:
    """What an error message adds when bad rows were skipped: how many, and the first."""
    return f"; {len(errors.skipped)} bad rows skipped, first: {errors.skipped[0]}" if errors.skipped else ""


def kept(table: Table, keep: list[int]) -> Table:
    """``table`` with only the rows ``keep`` (itself when that is all of them)."""
    return table if len(keep) == len(table) else table.take(keep)


def check_texts(
    table: Table, column: str, role: str, name: str, errors: RowErrors, *, empty_ok: bool = False
) -> tuple[Table, list[str]]:
    """The rows with a usable text in ``column``, and those texts (``empty_ok``: keep empty ones)."""
    values = table.require(column, role, name)
    keep, texts = [], []
    for i, v in enumerate(values):
        problem = text_problem(v, column, role, empty_ok=empty_ok)
        if problem:
            errors.bad(table.where[i], problem)
        else:
            keep.append(i)
            texts.append(str(v))
    return kept(table, keep), texts


def check_labels(table: Table, column: str, name: str, errors: RowErrors) -> Table:
    """The rows with one label (a string or a number); a missing or nested label is a bad row. Run before
    the label names are collected, so that a skipped row adds no class."""
    values = table.require(column, "label", name)
    keep = []
    for i, v in enumerate(values):
        problem = label_problem(v, column)
        if problem:
            errors.bad(table.where[i], problem)
        else:
            keep.append(i)
    return kept(table, keep)


def label_names(values: list, given: list[str] | None, name: str, column: str) -> list[str]:
    """The class names: ``given``, else ids 0..max when the labels are class ids, else the sorted names."""
    if given is not None:
        return list(given)
    present = set(values)
    if present and all(isinstance(v, (int, np.integer)) for v in present) and min(present) >= 0:  # class ids
        top = int(max(present))
        if top >= max(1000, 10 * len(present)):  # ids, but not of classes: a model with `top` outputs
            raise SoraError(
                f"{name}: column '{column}' has integer labels up to {top} but only {len(present)} "
                "different ones; as class ids they must count from 0; as names, list them in "
                "data.label_names"
            )
        return [str(i) for i in range(top + 1)]
    names = {str(v).strip() for v in present}
    if all(n.lstrip("-").isdigit() for n in names):  # "2" before "10"
        return sorted(names, key=int)
    return sorted(names)


def label_ids(
    table: Table, column: str, names: list[str], name: str, errors: RowErrors
) -> tuple[np.ndarray, list[int]]:
    """Each row's class id, and the rows kept: a label outside ``names`` is a bad row."""
    values = table.require(column, "label", name)
    index = {n: i for i, n in enumerate(names)}
    ids, keep = [], []
    for i, v in enumerate(values):
        key = str(v.item() if hasattr(v, "item") else v).strip()
        if key in index:
            ids.append(index[key])
        elif isinstance(v, (int, np.integer)) and 0 <= int(v) < len(names):
            ids.append(int(v))
        else:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            errors.bad(
                table.where[i],
                f"unknown label {key!r} in column '{column}' (labels: {shown}); list it in data.label_names",
            )
            continue
        keep.append(i)
    return np.asarray(ids, dtype=np.int64), keep
