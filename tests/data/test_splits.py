"""Splits are deterministic from the seed, disjoint, stratified by label, or keep groups apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sora.data import DataConfig, prepare_data
from sora.data.splits import contiguous_split, group_split, random_split, stratified_split, unusable_split
from sora.errors import ConfigError


def _check_partition(parts, n):
    joined = np.concatenate(list(parts.values()))
    assert len(joined) == n and len(set(joined.tolist())) == n  # disjoint and complete


def test_random_split_is_deterministic_disjoint_and_complete():
    a, b, c = random_split(100, 0.1, 0.2, seed=3), random_split(100, 0.1, 0.2, seed=3), random_split(100, 0.1, 0.2, 4)
    _check_partition(a, 100)
    assert {k: len(v) for k, v in a.items()} == {"train": 70, "validation": 10, "test": 20}
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_stratified_split_keeps_label_proportions():
    labels = np.array([0] * 900 + [1] * 100)  # 10% minority
    parts = stratified_split(labels, 0.1, 0.1, seed=0)
    _check_partition(parts, 1000)
    for split in ("train", "validation", "test"):
        assert labels[parts[split]].mean() == pytest.approx(0.1, abs=0.005)
    assert not np.all(np.diff(labels[parts["train"]]) >= 0)  # shuffled, not sorted by label


def test_group_split_never_puts_a_group_in_two_splits():
    groups = [f"film{i // 7}" for i in range(700)]
    parts = group_split(groups, 0.1, 0.1, seed=0)
    _check_partition(parts, 700)
    owners = {}
    for split, idx in parts.items():
        for i in idx:
            assert owners.setdefault(groups[i], split) == split
    assert 60 <= len(parts["validation"]) <= 90 and 60 <= len(parts["test"]) <= 90


def test_contiguous_split_for_language_modelling():
    parts = contiguous_split(100, 0.1, 0.0)
    assert parts["train"].tolist() == list(range(90)) and parts["validation"].tolist() == list(range(90, 100))


def test_prepare_uses_a_group_column_and_limit_is_deterministic(tmp_path):
    path = tmp_path / "r.jsonl"
    with open(path, "w") as f:
        for i in range(300):
            f.write(
                json.dumps(
                    {"text": f"review {i} of film {i // 10}", "label": ["neg", "pos"][i % 2], "film": f"film {i // 10}"}
                )
                + "\n"
            )
    cfg = {"source": str(path), "tokenizer": {"kind": "char"}, "split": {"group": "film", "seed": 1}}
    data = prepare_data(DataConfig.model_validate(cfg))
    films = {s: {t.split(" of ")[1] for t in ex.texts} for s, ex in data.splits.items()}
    assert not films["train"] & films["validation"] and not films["train"] & films["test"]
    assert not films["validation"] & films["test"]
    limited = [prepare_data(DataConfig.model_validate({**cfg, "limit": 20})) for _ in range(2)]
    assert limited[0].splits["train"].texts == limited[1].splits["train"].texts
    assert len(limited[0].splits["train"]) == 20 and set(limited[0].splits["train"].texts) <= set(
        data.splits["train"].texts
    )


def test_given_splits_from_a_mapping_and_from_a_column(tmp_path):
    for name, n in (("train", 40), ("test", 10)):
        (tmp_path / f"{name}.csv").write_text(
            "label,text\n" + "".join(f"{['a', 'b'][i % 2]},{name} {i}\n" for i in range(n))
        )
    data = prepare_data(
        DataConfig.model_validate(
            {
                "source": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")},
                "tokenizer": {"kind": "char"},
                "split": {"validation": 0.25},
            }
        )
    )
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 30, "validation": 10, "test": 10}
    assert all(t.startswith("test") for t in data.splits["test"].texts)
    assert all(t.startswith("train") for t in data.splits["validation"].texts)
    (tmp_path / "all.csv").write_text(
        "label,text,part\n"
        + "".join(f"{['a', 'b'][i % 2]},row {i},{['train', 'dev', 'test'][i % 3]}\n" for i in range(30))
    )
    data = prepare_data(
        DataConfig.model_validate(
            {
                "source": str(tmp_path / "all.csv"),
                "tokenizer": {"kind": "char"},
                "columns": {"split": "part"},
                "split": {"given": True},
            }
        )
    )
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 10, "validation": 10, "test": 10}


def test_split_fractions_are_validated():
    with pytest.raises(ConfigError, match="leaves nothing to train on"):
        from sora.configio import validate

        validate(DataConfig, {"dataset": "digits", "split": {"validation": 0.5, "test": 0.5}}, source="r.yaml")


def test_a_split_that_is_missing_is_told_from_one_that_is_empty():
    sizes = {"train": 90, "validation": 10, "test": 0}
    assert (
        unusable_split("dev", sizes, "austen") == "no split 'dev' in austen (splits: train 90, validation 10, test 0)"
    )
    assert unusable_split("test", sizes, "austen", 0.0) == (
        "the 'test' split of austen is empty (splits: train 90, validation 10, test 0): its split settings hold out "
        "test: 0; try --split validation"
    )
    assert "the data is too small to hold any out for it" in unusable_split("test", sizes, "austen", 0.1)
