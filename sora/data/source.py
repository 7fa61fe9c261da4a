"""What a task's builder starts from (``Source``), and what every builder does with repeated inputs.

Its own module so that builders in other modules (sora.data.build_span) share them with sora.data.builders,
which registers every builder, without an import cycle.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from sora.data.builtin import Raw
from sora.data.config import DataConfig
from sora.data.duplicates import describe_duplicates, first_occurrences, group_ids, split_overlap
from sora.data.rows import kept
from sora.data.splits import Selection
from sora.data.table import RowErrors
from sora.errors import SoraWarning


class DuplicateInputsWarning(SoraWarning):
    """``duplicates: drop`` met inputs with more than one label: it kept the first row's."""


@dataclass
class Source:
    """What a builder starts from."""

    cfg: DataConfig
    raw: Raw  # the source's tables: one ("all") or the splits it comes with
    columns: dict[str, str]  # role -> column name (the source's defaults, then data.columns)
    errors: RowErrors  # where bad rows go: an error, or skipped and counted
    tokenizer: Tokenizer | None  # one to reuse; None: made from the training split
    name: str  # the dataset, for messages


def handle_repeats(
    src: Source,
    raw: Raw,
    keys: dict[str, list],
    labels: dict[str, np.ndarray] | None = None,
    names: list[str] | None = None,
    targets: dict[str, list] | None = None,
) -> tuple[Raw, dict[str, list], dict[str, np.ndarray], dict[str, Any]]:
    """Identical inputs reported, then handled as ``data.duplicates`` says: the rows after ``drop`` (``labels``
    and ``targets``, each table's, are cut to them in place), their keys, and (``group``) each table's groups
    of identical inputs for select_rows, only where some input repeats."""
    handling, tables = src.cfg.duplicates, raw.tables
    where = [w for t in tables.values() for w in t.where]
    every = [k for t in keys.values() for k in t]
    shown = [k if isinstance(k, str) else w for k, w in zip(every, where)]  # a text, or the file an array came from
    row_labels = [names[i] for k in tables for i in labels[k]] if labels is not None and names else None
    report = describe_duplicates(every, where, shown, row_labels, handling)
    if handling == "drop" and report["extra_copies"]:
        firsts = {k: first_occurrences(v) for k, v in keys.items()}
        tables = {k: kept(t, firsts[k]) for k, t in tables.items()}
        keys = {k: [v[i] for i in firsts[k]] for k, v in keys.items()}
        if labels is not None:
            labels.update({k: v[firsts[k]] for k, v in labels.items()})
        if targets is not None:
            targets.update({k: [v[i] for i in firsts[k]] for k, v in targets.items()})
        report["dropped"] = len(every) - sum(len(v) for v in keys.values())
        if report.get("conflicting_labels"):
            c = report["conflicts"][0]
            warnings.warn(
                f"{src.name}: {report['conflicting_labels']:,} input(s) have more than one label; duplicates: drop "
                f"keeps the first row's, e.g. {c['input']!r} ({c['first']}): {', '.join(c['labels'])}",
                DuplicateInputsWarning,
                stacklevel=4,
            )
    same = {}
    if handling == "group":
        same = {k: ids for k, v in keys.items() if len(set(ids := group_ids(v).tolist())) < len(v)}
        same = {k: np.asarray(v, np.int64) for k, v in same.items()}
    return Raw(tables, raw.columns, raw.label_names, raw.group), keys, same, {"duplicates": report}


def overlap(src: Source, chosen: dict[str, Selection], keys: dict[str, list]) -> dict[str, Any]:
    """How many validation and test examples also occur in training (a warning when more than a few)."""
    split_keys = {k: [keys[s.source][i] for i in s.rows.tolist()] for k, s in chosen.items()}
    given = any(s.source == k for k, s in chosen.items() if k != "train")
    return split_overlap(split_keys, src.name, given, src.cfg.duplicates)
