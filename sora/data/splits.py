"""Deterministic train/validation/test splits: random, stratified by label, grouped, or contiguous.

Every function returns index arrays into the table, computed from the seed alone, so the same
config always gives the same examples in each split and no example is in two of them.
``select_rows`` applies a ``data.split`` config to a source's tables: it uses the splits the source
comes with (carving missing ones from train), a split column, or computes them, then caps each at
``data.limit``; ``cut_documents`` splits a language-modelling corpus by characters.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from sora.data.builtin import Raw
from sora.data.config import DataConfig
from sora.data.duplicates import merge_groups
from sora.data.table import Table
from sora.errors import SoraError

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}  # in a split column

Splits = dict[str, np.ndarray]


class Selection(NamedTuple):
    """A split's rows: which of the source's tables (its key in ``Raw.tables``), that table, and row indices."""

    source: str
    table: Table
    rows: np.ndarray


def _counts(n: int, validation: float, test: float) -> tuple[int, int]:
    n_val, n_test = int(round(n * validation)), int(round(n * test))
    if validation > 0 and n_val == 0 and n >= 3:
        n_val = 1
    if test > 0 and n_test == 0 and n >= 3:
        n_test = 1
    return n_val, n_test


def random_split(n: int, validation: float, test: float, seed: int) -> Splits:
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = _counts(n, validation, test)
    return {"train": order[n_val + n_test :], "validation": order[:n_val], "test": order[n_val : n_val + n_test]}


def stratified_split(labels: np.ndarray, validation: float, test: float, seed: int) -> Splits:
    """Each label's examples are split in the same proportions, so every split keeps the label mix."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_val, n_test = _counts(len(members), validation, test)
        parts["validation"].append(members[:n_val])
        parts["test"].append(members[n_val : n_val + n_test])
        parts["train"].append(members[n_val + n_test :])
    # interleave labels again: a split sorted by label would feed one class at a time
    return {
        k: np.concatenate(v)[rng.permutation(sum(len(x) for x in v))] if v else np.zeros(0, np.int64)
        for k, v in parts.items()
    }


def group_split(groups: list, validation: float, test: float, seed: int) -> Splits:
    """Whole groups go to one split (e.g. every snippet of one film, every verse of one chapter).

    Groups are shuffled and assigned until each held-out split has its share of *examples*.
    """
    keys, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    if len(keys) < 3 and (validation > 0 or test > 0):
        raise SoraError(f"group split needs at least 3 groups, found {len(keys)}")
    sizes = np.bincount(inverse, minlength=len(keys))
    order = np.random.default_rng(seed).permutation(len(keys))
    n = len(groups)
    targets = {"validation": validation * n, "test": test * n}
    assign = np.full(len(keys), 0)  # 0 train, 1 validation, 2 test
    filled = {"validation": 0, "test": 0}
    cursor = 0
    for code, split in ((1, "validation"), (2, "test")):
        while targets[split] > 0 and filled[split] < targets[split] and cursor < len(order) - 1:
            g = order[cursor]
            assign[g] = code
            filled[split] += sizes[g]
            cursor += 1
    rng = np.random.default_rng(seed + 1)
    out = {}
    for code, split in ((0, "train"), (1, "validation"), (2, "test")):
        idx = np.flatnonzero(assign[inverse] == code)
        out[split] = idx[rng.permutation(len(idx))]
    return out


def contiguous_split(n: int, validation: float, test: float) -> Splits:
    """Language modelling: train on the beginning, validate on what follows, test on the end."""
    n_val, n_test = int(n * validation), int(n * test)
    n_train = n - n_val - n_test
    idx = np.arange(n)
    return {"train": idx[:n_train], "validation": idx[n_train : n_train + n_val], "test": idx[n_train + n_val :]}


def carve(
    indices: np.ndarray, fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, held out ``fraction``), stratified when labels are given."""
    if fraction <= 0:
        return indices, indices[:0]
    if labels is not None:
        parts = stratified_split(labels[indices], fraction, 0.0, seed)
    else:
        parts = random_split(len(indices), fraction, 0.0, seed)
    return indices[parts["train"]], indices[parts["validation"]]


def unusable_split(split: str, sizes: dict[str, int], name: str, fraction: float | None = None) -> str:
    """Why ``split`` of the data called ``name`` cannot be used: it does not exist, or it exists but holds no
    examples (the split settings held nothing out for it, e.g. ``test: 0.0``, or the data is too small)."""
    listed = ", ".join(f"{k} {n:,}" for k, n in sizes.items())
    if split not in sizes:
        return f"no split '{split}' in {name} (splits: {listed})"
    why = (
        f"its split settings hold out {split}: {fraction:g}"
        if fraction is not None and fraction == 0
        else "the data is too small to hold any out for it"
    )
    others = sorted((k for k, n in sizes.items() if n and k != split), key=lambda k: k == "train")  # held out first
    hint = f"; try --split {others[0]}" if others else ""
    return f"the '{split}' split of {name} is empty (splits: {listed}): {why}{hint}"


# -- a data config's splits of a source ------------------------------------------------------------------


def select_rows(
    cfg: DataConfig,
    raw: Raw,
    columns: dict[str, str],
    labels: dict[str, np.ndarray] | None,
    same: dict[str, np.ndarray] | None = None,
) -> dict[str, Selection]:
    """Each split's rows after splitting and ``limit`` (``labels``: each table's label ids, to stratify;
    ``same``: each table's groups of identical inputs, which splits computed here keep together)."""
    chosen = _split_indices(cfg, raw, columns, labels, same or {})
    out = {}
    for split in SPLITS:
        source, idx = chosen.get(split, ("all" if "all" in raw.tables else "train", np.zeros(0, np.int64)))
        out[split] = Selection(source, raw.tables[source], _limited(cfg, idx, source != "all"))
    return out


def _split_indices(
    cfg: DataConfig, raw: Raw, columns: dict[str, str], labels: dict[str, np.ndarray] | None, same: dict
) -> dict[str, tuple[str, np.ndarray]]:
    """For each split, (table name, row indices). Given splits are used; missing ones carved from train."""
    s = cfg.split
    given = [k for k in raw.tables if k != "all"]
    use_given = given and not ("given" in s.model_fields_set and not s.given)
    if given and not use_given:  # the user asked to re-split a source that comes split
        raise SoraError(
            "data.split.given: false, but this source comes split "
            f"({', '.join(given)}); remove it or give a single source"
        )
    if use_given:
        return _given_tables(cfg, raw, given, labels, same.get("train"))
    table = raw.tables["all"]
    if s.given:
        return {k: ("all", v) for k, v in _split_column(table, columns.get("split", "split")).items()}
    group_col = cfg.column("group") or columns.get("group") or raw.group
    rows, same_all = np.arange(len(table)), same.get("all")
    if group_col:
        values = table.require(group_col, "group", "data")
        if same_all is not None:  # a group column and identical inputs: both stay in one split
            values = merge_groups(np.unique(np.asarray([str(g) for g in values]), return_inverse=True)[1], same_all)
        parts = group_split(values, s.validation, s.test, s.seed)
    elif labels is not None and s.stratify:
        parts = by_group(rows, same_all, lambda r: stratified_split(labels["all"][r], s.validation, s.test, s.seed))
    else:
        parts = by_group(rows, same_all, lambda r: random_split(len(r), s.validation, s.test, s.seed))
    return {k: ("all", v) for k, v in parts.items()}


def by_group(rows: np.ndarray, groups: np.ndarray | None, split: Callable[[np.ndarray], Splits]) -> Splits:
    """``split`` (positions into the rows it is given) applied to the first row of each group among ``rows``;
    every other row goes where its group's first row went. Without repeats this is ``split`` of ``rows``."""
    if groups is None:
        return {k: rows[v] for k, v in split(rows).items()}
    ids = groups[rows]
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # groups in the order they first occur
    heads = rows[first[order]]
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    members: list[list[int]] = [[] for _ in heads]
    for row, p in zip(rows.tolist(), position[inverse].tolist()):
        members[p].append(row)
    return {k: np.asarray([r for p in v.tolist() for r in members[p]], dtype=np.int64) for k, v in split(heads).items()}


def _given_tables(
    cfg: DataConfig, raw: Raw, given: list[str], labels: dict[str, np.ndarray] | None, same: np.ndarray | None
) -> dict[str, tuple[str, np.ndarray]]:
    """The splits a source comes with; validation and test, when missing, carved from train in that order
    (``same``: groups of identical training inputs, carved whole)."""
    s = cfg.split
    out = {k: (k, np.arange(len(raw.tables[k]))) for k in given}
    train_labels = labels.get("train") if labels and s.stratify else None
    seed = s.seed
    for missing, fraction in (("validation", s.validation), ("test", s.test)):
        if missing not in out:
            parts = by_group(out["train"][1], same, lambda r: _carved(r, fraction, seed, train_labels))
            out["train"], out[missing] = ("train", parts["train"]), ("train", parts["held"])
            seed += 1
    return out


def _carved(rows: np.ndarray, fraction: float, seed: int, labels: np.ndarray | None) -> Splits:
    """``carve`` as positions into ``rows``, for ``by_group``."""
    rest, held = carve(np.arange(len(rows)), fraction, seed, labels[rows] if labels is not None else None)
    return {"train": rest, "held": held}


def _split_column(table: Table, split_col: str) -> Splits:
    """The rows of each split named in column ``split_col`` (``data.split.given: true`` on one table)."""
    if split_col not in table.columns:
        raise SoraError(
            f"data.split.given: the source has no '{split_col}' column and is not a mapping of "
            "splits; name the column with data.columns.split"
        )
    values = [str(v).strip().lower() for v in table.columns[split_col]]
    values = [SPLIT_ALIASES.get(v, v) for v in values]
    bad = sorted(set(values) - set(SPLITS))
    if bad:
        raise SoraError(f"column '{split_col}': unknown split name(s) {bad} (use train, validation, test)")
    return {k: np.flatnonzero(np.asarray(values) == k) for k in SPLITS}


def _limited(cfg: DataConfig, idx: np.ndarray, from_given: bool) -> np.ndarray:
    if cfg.limit is None or len(idx) <= cfg.limit:
        return idx
    if from_given:  # given splits are in source order: take a seeded sample, kept in that order
        pick = np.sort(np.random.default_rng(cfg.split.seed).permutation(len(idx))[: cfg.limit])
        return idx[pick]
    return idx[: cfg.limit]  # computed splits are already in a seeded random order


def cut_documents(docs: list[str], validation: float, test: float) -> dict[str, list[str]]:
    """Cut the concatenated documents at character fractions: train first, then validation, then test."""
    total = sum(len(d) for d in docs)
    bounds = [0, int(total * (1 - validation - test)), int(total * (1 - test)), total]
    out: dict[str, list[str]] = {k: [] for k in SPLITS}
    start = 0
    for doc in docs:
        end = start + len(doc)
        for k, split in enumerate(SPLITS):
            lo, hi = max(start, bounds[k]), min(end, bounds[k + 1])
            if hi > lo:
                out[split].append(doc[lo - start : hi - start])
        start = end
    return out
