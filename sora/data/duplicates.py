"""Exact duplicate inputs: found and reported, dropped, or kept together in one split.

A dataset that holds the same input many times (a question asked in several files, a tweet retweeted)
and is split at random puts copies of training examples in the test split: the test score then measures
memory, not generalisation (15,452 questions holding 5,381 distinct texts gave 98.1% on a random split and
81% on a grouped one). ``data.duplicates`` says what to do (sora.data.config), and every preparation
reports how many inputs repeat and how many held-out examples also occur in training.

Inputs compare exactly: texts as the reader gives them (stripped of surrounding white space when
``normalize.strip`` is on, as the tokenizer sees them), images and audio by a hash of their array bytes.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from typing import Any, Sequence

import numpy as np

from sora.errors import SoraWarning

OVERLAP_WARN_SHARE = 0.01  # a held-out split with more than 1% of its examples in training is warned about
SHOWN = 3  # examples of repeated inputs and of conflicting labels kept in the report


class SplitOverlapWarning(SoraWarning):
    """Validation or test examples also occur in training: their scores overstate what the model learnt."""


def input_keys(values: Sequence[Any] | np.ndarray, modality: str, strip: bool = True) -> list:
    """One hashable key per row, equal exactly when the inputs are: the text, or a digest of the array."""
    if modality == "text":
        return [str(v).strip() if strip else str(v) for v in values]
    return [_digest(np.asarray(v)) for v in values]


def _digest(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.blake2b(header + array.tobytes(), digest_size=16).digest()


def group_ids(keys: Sequence) -> np.ndarray:
    """Each row's group: rows with the same key share one id; ids count from 0 in order of first occurrence."""
    index: dict[Any, int] = {}
    return np.asarray([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)


def first_occurrences(keys: Sequence) -> list[int]:
    """The rows whose key no earlier row has (what ``duplicates: drop`` keeps)."""
    seen: set = set()
    return [i for i, k in enumerate(keys) if not (k in seen or seen.add(k))]


def merge_groups(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Groups that join ``a`` and ``b``: two rows share a group when a chain of shared ids in either links them
    (a user's group column and identical inputs, both kept out of two splits)."""
    parent = list(range(len(a)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for ids in (a, b):
        first: dict[int, int] = {}
        for i, g in enumerate(ids.tolist()):
            parent[root(i)] = root(first.setdefault(g, i))
    return group_ids([root(i) for i in range(len(a))])


def describe_duplicates(
    keys: Sequence, where: Sequence[str], shown: Sequence[str], labels: Sequence[str] | None, handling: str
) -> dict[str, Any]:
    """How many rows repeat an earlier input, a few of the most repeated, and the inputs given different labels
    (``shown``: each row's input as a person reads it)."""
    counts = Counter(keys)
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    repeated = [(k, c) for k, c in counts.most_common() if c > 1]
    out: dict[str, Any] = {
        "rows": len(keys),
        "distinct": len(counts),
        "repeated_inputs": len(repeated),
        "extra_copies": len(keys) - len(counts),
        "handling": handling,
        "examples": [
            {"input": _short(shown[first[k]]), "count": c, "first": where[first[k]]} for k, c in repeated[:SHOWN]
        ],
    }
    if labels is not None and repeated:
        seen: dict[Any, set] = {}
        for k, label in zip(keys, labels):
            if counts[k] > 1:
                seen.setdefault(k, set()).add(label)
        conflicts = [k for k, ls in seen.items() if len(ls) > 1]
        out["conflicting_labels"] = len(conflicts)
        out["conflicts"] = [
            {"input": _short(shown[first[k]]), "labels": sorted(seen[k]), "first": where[first[k]]}
            for k in conflicts[:SHOWN]
        ]
    return out


def _short(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def split_overlap(split_keys: dict[str, list], name: str, given: bool, handling: str) -> dict[str, Any]:
    """For validation and test: how many examples, and how many of them also occur in training; a warning when
    that is more than a trivial share (``given``: the source came split, so grouping could not move rows)."""
    train = set(split_keys["train"])
    out = {}
    for split in ("validation", "test"):
        keys = split_keys.get(split, [])
        if not keys:
            continue
        shared = sum(k in train for k in keys)
        out[split] = {"examples": len(keys), "in_train": shared, "share": round(shared / len(keys), 4)}
        if shared / len(keys) > OVERLAP_WARN_SHARE:
            fix = (
                "the source came split, so remove them from that file"
                if given
                else f"set data.duplicates: group or drop (it is {handling})"
            )
            warnings.warn(
                f"{name}: {shared:,} of {len(keys):,} {split} examples ({shared / len(keys):.1%}) also occur in "
                f"training, so {split} scores overstate what the model learnt; {fix}",
                SplitOverlapWarning,
                stacklevel=5,  # the caller of prepare_data
            )
    return out


def summary(info: dict[str, Any]) -> list[str]:
    """The duplicate and overlap figures of ``Prepared.info`` as lines for a person (data show, training log)."""
    lines = []
    dup = info.get("duplicates")
    if dup:
        if dup["extra_copies"]:
            dropped = ", dropped" if dup["handling"] == "drop" else f" (data.duplicates: {dup['handling']})"
            lines.append(
                f"duplicates: {dup['extra_copies']:,} of {dup['rows']:,} rows repeat an earlier input "
                f"({dup['distinct']:,} distinct){dropped}; most repeated: "
                + "; ".join(f"{e['input']!r} x{e['count']} ({e['first']})" for e in dup["examples"])
            )
        else:
            lines.append(f"duplicates: none in {dup['rows']:,} rows")
        if dup.get("conflicting_labels"):
            lines.append(
                f"conflicting labels: {dup['conflicting_labels']:,} input(s) have more than one label, e.g. "
                + "; ".join(f"{c['input']!r}: {', '.join(c['labels'])} ({c['first']})" for c in dup["conflicts"])
            )
    for split, o in info.get("overlap", {}).items():
        lines.append(f"{split} examples also in training: {o['in_train']:,} of {o['examples']:,} ({o['share']:.1%})")
    return lines
