"""Deterministic train/validation/test splits: random, stratified by label, grouped, or contiguous.

Every function returns index arrays into the table, computed from the seed alone, so the same
config always gives the same examples in each split and no example is in two of them.
"""

from __future__ import annotations

import numpy as np

from sora.errors import SoraError

Splits = dict[str, np.ndarray]


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
    return {"train": order[n_val + n_test:], "validation": order[:n_val], "test": order[n_val:n_val + n_test]}


def stratified_split(labels: np.ndarray, validation: float, test: float, seed: int) -> Splits:
    """Each label's examples are split in the same proportions, so every split keeps the label mix."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_val, n_test = _counts(len(members), validation, test)
        parts["validation"].append(members[:n_val])
        parts["test"].append(members[n_val:n_val + n_test])
        parts["train"].append(members[n_val + n_test:])
    # interleave labels again: a split sorted by label would feed one class at a time
    return {k: np.concatenate(v)[rng.permutation(sum(len(x) for x in v))] if v else np.zeros(0, np.int64)
            for k, v in parts.items()}


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
    return {"train": idx[:n_train], "validation": idx[n_train:n_train + n_val], "test": idx[n_train + n_val:]}


def carve(indices: np.ndarray, fraction: float, seed: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    why = f"its split settings hold out {split}: {fraction:g}" if fraction is not None and fraction == 0 else \
        "the data is too small to hold any out for it"
    others = sorted((k for k, n in sizes.items() if n and k != split), key=lambda k: k == "train")  # held out first
    hint = f"; try --split {others[0]}" if others else ""
    return f"the '{split}' split of {name} is empty (splits: {listed}): {why}{hint}"
