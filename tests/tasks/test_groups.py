"""Metrics by group (sora.tasks.groups): a split's metrics for each value of one of its data columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sora.data import DataConfig, prepare_data
from sora.errors import SoraError
from sora.models import build_model
from sora.tasks import describe_groups, evaluate, evaluate_by, group_rows, task_for
from tests.helpers import tiny

WORDS = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}


@pytest.fixture
def data(tmp_path):
    """Texts with a label and a noise level (null for clean), 40% held out for test."""
    rng = np.random.default_rng(0)
    path = tmp_path / "rows.jsonl"
    with open(path, "w") as f:
        for i in range(200):
            label = ("pos", "neg")[i % 2]
            text = " ".join(rng.choice(WORDS[label], size=int(rng.integers(2, 6))))
            snr = [None, 0.0, 10.0, 5.0][i % 4 if i % 3 else 0]
            f.write(json.dumps({"text": text, "label": label, "snr": snr}) + "\n")
    cfg = DataConfig(source=str(path), tokenizer={"kind": "char"}, split={"validation": 0.1, "test": 0.4, "seed": 0})
    return prepare_data(cfg)


def test_groups_are_named_and_ordered_for_reading():
    rows = group_rows([10.0, "clean", 0.0, None, 5, 10.0, "clean", 2.5])
    assert list(rows) == ["0", "2.5", "5", "10", "clean", "none"]
    assert rows["10"].tolist() == [0, 5] and rows["clean"].tolist() == [1, 6] and rows["none"].tolist() == [3]


def test_each_group_is_evaluated_on_its_rows_alone_and_they_add_up_to_the_split(data):
    model = build_model(tiny(vocab_size=data.vocab_size, n_classes=2)).eval()
    task = task_for(data, model)
    overall, groups = evaluate_by(model, data, "test", "snr", task, batch_size=16)
    column = data.column("test", "snr")
    assert list(groups) == ["0", "5", "10", "none"]
    assert sum(g["examples"] for g in groups.values()) == len(column) > 60
    for name, rows in group_rows(column).items():  # each group: the same figures as an evaluation of its rows
        alone = evaluate(model, data.loader("test", 16, rows=rows), task)
        assert groups[name]["accuracy"] == pytest.approx(alone["accuracy"])
        assert groups[name]["loss"] == pytest.approx(alone["loss"])
    whole = evaluate(model, data.loader("test", 16), task)  # the groups' statistics sum to the whole split's
    assert overall["accuracy"] == pytest.approx(whole["accuracy"]) and overall["loss"] == pytest.approx(whole["loss"])
    lines = describe_groups("snr", groups)
    assert lines[0].startswith("snr=0    (") and "accuracy" in lines[0] and "f1_" not in lines[0]


def test_a_column_the_data_lacks_is_named(data):
    model = build_model(tiny(vocab_size=data.vocab_size, n_classes=2))
    with pytest.raises(SoraError, match=r"no column 'accent' to group by in the test split \(has label, snr, text\)"):
        evaluate_by(model, data, "test", "accent", task_for(data, model), batch_size=16)
