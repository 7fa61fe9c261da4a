"""One task layer (issue 20, item 1): training, analysis and compression share sora.tasks and read
prepared data through sora.data.TaskData instead of probing it."""

from __future__ import annotations

import ast
import importlib.util
import math
import re
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sora
import sora.analyze
import sora.tasks
import sora.train
from sora.data import DataConfig, Prepared, TaskData
from sora.data.datasets import TextClassification
from sora.models import build_model
from sora.tasks import CTC, Classification, evaluate, greedy_ctc, loss_and_metric, make_task, task_for
from sora.tasks.metrics import edit_distance
from tests.compress.toy_data import ToyClassification
from tests.helpers import tiny
from tests.train.synthetic import SyntheticData

ROOT = Path(sora.__file__).parent
ARCH = {"classification": "encoder_classifier", "lm": "decoder_lm", "seq2seq": "seq2seq"}


# -- one home ---------------------------------------------------------------------------------------


@cache
def _homes() -> dict[str, list[str]]:
    """Each function or method name defined in sora/ -> the files that define it."""
    homes: dict[str, list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        names = {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
        for name in names:
            homes.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return homes


@pytest.mark.parametrize(
    "name, home",
    [
        ("evaluate", "tasks/evaluation.py"),
        ("loss_and_metric", "tasks/evaluation.py"),
        ("edit_distance", "tasks/metrics.py"),
        ("greedy_ctc", "tasks/kinds.py"),
        ("to_device", "tasks/device.py"),
        ("autocast", "tasks/device.py"),
        ("infer_task", "tasks/registry.py"),
        ("has_split", "data/protocol.py"),
    ],
)
def test_each_task_procedure_is_defined_once_in_its_home(name, home):
    assert _homes().get(name) == [home]


def test_the_old_task_modules_are_gone_and_the_stages_re_export_the_one_layer():
    for old in ("sora.train.tasks", "sora.train.metrics", "sora.analyze.tasks"):
        assert importlib.util.find_spec(old) is None, old
    assert sora.train.evaluate is sora.tasks.evaluate and sora.train.task_for is sora.tasks.task_for
    assert sora.analyze.score is sora.tasks.score and sora.analyze.run_model is sora.tasks.run_model
    assert sora.analyze.loss_and_metric is sora.tasks.loss_and_metric


PROBE = re.compile(r"getattr\((self\.)?data, \"(task|labels|tokenizer|name|splits)\"")


def test_no_stage_probes_prepared_data_for_what_the_protocol_promises():
    probes = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in sorted(ROOT.rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if PROBE.search(line)
    ]
    assert probes == []


# -- the protocol ------------------------------------------------------------------------------------


def _prepared(sizes: dict[str, int]) -> Prepared:
    rng = np.random.default_rng(0)
    splits = {
        k: TextClassification([rng.integers(3, 9, 4) for _ in range(n)], np.zeros(n, np.int64), ["a b"] * n)
        for k, n in sizes.items()
    }
    return Prepared(DataConfig.model_construct(), "classification", "text", None, ["no", "yes"], splits, name="tiny")


def test_has_split_is_true_only_for_a_split_with_an_example():
    data = _prepared({"train": 3, "validation": 0})
    assert TaskData in Prepared.__mro__  # has_split comes from the protocol
    assert [data.has_split(s) for s in ("train", "validation", "test")] == [True, False, False]
    stand_ins = SyntheticData("classification", n_test=0), ToyClassification()
    assert [d.has_split("test") for d in stand_ins] == [False, True]
    assert [d.has_split("nonsense") for d in stand_ins] == [False, False]


def test_task_for_reads_the_task_labels_and_tokenizer_of_any_data():
    task = task_for(SimpleNamespace(task="ctc", labels=["<blank>", "a", "b"], tokenizer=None))
    assert isinstance(task, CTC) and task.text([1, 2, 0, 9]) == "ab"
    task = task_for(_prepared({"train": 2}), build_model(tiny(n_classes=2)))
    assert isinstance(task, Classification) and task.labels == ["no", "yes"] and task.n_classes == 2


# -- training and analysis measure alike --------------------------------------------------------------


@settings(max_examples=8, deadline=None, derandomize=True)
@given(kind=st.sampled_from(sorted(ARCH)), seed=st.integers(0, 10_000), batch_size=st.integers(1, 9))
def test_training_and_analysis_agree_on_the_loss(kind, seed, batch_size):
    """``evaluate`` (training's metrics) and ``loss_and_metric`` (analysis's figures) are one task's two views:
    the same mean loss per target, and for classification the same accuracy."""
    torch.manual_seed(seed)
    data = SyntheticData(kind, n=4, n_val=11, n_test=0, seed=seed)
    model = build_model(tiny(ARCH[kind])).eval()
    task = make_task(kind, labels=data.labels, decode=False)
    metrics = evaluate(model, data.loader("validation", batch_size), task)
    figures = loss_and_metric(model, data.loader("validation", batch_size), task)
    assert figures["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    if kind == "classification":
        assert figures["metric"] == pytest.approx(metrics["accuracy"], abs=1e-12)
    assert 0.0 <= figures["metric"] <= 1.0


def _levenshtein(a: list, b: list) -> int:
    """The textbook full-table dynamic programme, written independently of sora.tasks.metrics."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[-1][-1]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(a=st.lists(st.integers(0, 3), max_size=9), b=st.lists(st.integers(0, 3), max_size=9))
def test_edit_distance_is_the_levenshtein_distance(a, b):
    assert edit_distance(a, b) == _levenshtein(a, b) == edit_distance(b, a)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(data=st.data(), frames=st.integers(1, 12), classes=st.integers(2, 5), rows=st.integers(1, 3))
def test_greedy_ctc_decodes_logits_and_log_probabilities_alike(data, frames, classes, rows):
    """Analysis decodes the logits, validation their log-probabilities: one best path. Scores are distinct
    per frame (a permutation), so the path is defined."""
    perms = [[data.draw(st.permutations(range(classes))) for _ in range(frames)] for _ in range(rows)]
    logits = torch.tensor(perms, dtype=torch.float32) * 3.0 - 5.0  # (rows, frames, classes)
    lengths = torch.tensor([data.draw(st.integers(0, frames)) for _ in range(rows)])
    decoded = greedy_ctc(logits, lengths)
    assert decoded == greedy_ctc(logits.log_softmax(-1), lengths)
    for row, n, ids in zip(logits.argmax(-1).tolist(), lengths.tolist(), decoded):
        path = row[:n]
        assert ids == [t for i, t in enumerate(path) if t != 0 and (i == 0 or t != path[i - 1])]


def test_ctc_scores_one_minus_the_token_error_rate_of_that_path():
    model = build_model(tiny("token_classifier", input="audio", audio={"n_mels": 8, "patch_frames": 4})).eval()
    data = SyntheticData("ctc", n=4, n_val=8, n_test=0)
    batch = next(iter(data.loader("validation", 8)))
    task = make_task("ctc", labels=data.labels)
    with torch.no_grad():
        s = task.score(model, batch)
        logits = task.forward(model, batch)
    lengths = model.output_valid(batch["inputs"], batch["valid"]).sum(1)
    refs = [row[:n].tolist() for row, n in zip(batch["targets"], batch["target_lengths"].tolist())]
    hits = sum(max(0, len(r) - edit_distance(h, r)) for h, r in zip(greedy_ctc(logits, lengths), refs))
    assert (s.hits, s.total) == (hits, sum(map(len, refs))) and s.losses.shape == (8,)
    assert math.isfinite(s.loss_sum)
