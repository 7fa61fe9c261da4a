"""Pruning by plan: the one step ``sora prune`` and the compress stage both take (sora.compress.prune)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sora.compress import PruneConfig, magnitude_scores, mask_model
from sora.compress.config import CompressConfig
from sora.compress.prune import prune, prune_by_plan
from sora.compress.stage import _prune
from sora.models import build_model, summary
from tests.compress.toy_data import ToyClassification
from tests.helpers import tiny

torch.manual_seed(0)
MODEL = build_model(tiny(pooling="mean")).eval()  # 2 blocks of 4 heads and 64 neurons
BATCH = next(iter(ToyClassification(n_train=8, n_eval=8).loader("validation", 8)))
SCORES = {**magnitude_scores(MODEL), "layers.0": 0.3, "layers.1": 0.1}
NAMES = [
    "layers.0.attn.head.1",
    "layers.1.attn.head.3",
    "layers.0.ffn.neuron.5",
    "layers.1.ffn.neuron.63",
    "layers.1.attn",
    "layers.0.ffn",
    "layers.0",
    "layers.1",
]


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    remove=st.lists(st.sampled_from(NAMES), max_size=4, unique=True),
    heads=st.sampled_from([None, 0.25, 0.5, 1.0]),
    neurons=st.sampled_from([None, 0.1, 0.5]),
    layers=st.sampled_from([None, 1]),
    scope=st.sampled_from(["global", "per_layer"]),
    normalize=st.booleans(),
)
def test_a_step_removes_what_its_plan_says_and_equals_masking_it(remove, heads, neurons, layers, scope, normalize):
    if sum(n in ("layers.0", "layers.1") for n in remove) + (layers or 0) > 1:
        remove = [n for n in remove if n not in ("layers.0", "layers.1")]  # keep at least one block
    before = _state(MODEL)
    step = prune_by_plan(
        MODEL,
        remove=remove,
        where="test",
        scores=SCORES,
        source="magnitudes",
        heads=heads,
        neurons=neurons,
        layers=layers,
        scope=scope,
        normalize=normalize,
    )
    assert all(torch.equal(v, before[k]) for k, v in MODEL.state_dict().items())  # the input is untouched
    assert step.counts == step.plan.summary(MODEL)
    assert step.record() == {"removed": step.plan.names(), **step.counts}
    named = {n for n in remove if ".head." in n or ".neuron." in n or n in ("layers.0", "layers.1")}
    assert named <= set(step.plan.names())  # every named particle goes (once, even when also chosen by score)
    was, now = summary(MODEL), summary(step.model)
    assert now["heads"] == was["heads"] - step.counts["heads_removed"]
    assert now["neurons"] == was["neurons"] - step.counts["neurons_removed"]
    assert now["layers"] == was["layers"] - len(step.counts["layers_removed"])
    with torch.no_grad():
        torch.testing.assert_close(
            step.model(BATCH["inputs"], BATCH["valid"]),
            mask_model(MODEL, step.plan)(BATCH["inputs"], BATCH["valid"]),
            atol=1e-5,
            rtol=0,
        )


def test_unknown_names_fail_naming_where_they_came_from():
    with pytest.raises(Exception, match="--heads: unknown particle 'layers.0.attn.head.9'"):
        prune_by_plan(MODEL, remove=["layers.0.attn.head.9"], where="--heads")


def test_sora_prune_and_the_compress_stage_take_the_same_step(tmp_path):
    """The same budget and scores file give the same plan and the same weights, whichever runs it."""
    scores = tmp_path / "analysis.json"
    scores.write_text(json.dumps(SCORES))
    config = PruneConfig(heads=0.5, neurons=0.25, scope="per_layer", scores=str(scores))
    by_command, _, info = prune(MODEL, config, log=lambda _: None)
    by_stage, stage_info, _ = _prune(
        MODEL, ToyClassification(), None, CompressConfig(prune=config, quantize=None), log=lambda _: None
    )
    assert stage_info["rounds"][0]["removed"] == info["removed"]
    assert all(torch.equal(v, by_stage.state_dict()[k]) for k, v in by_command.state_dict().items())


def test_sora_prune_leaves_its_input_alone_and_records_each_part():
    before = _state(MODEL)
    pruned, tokenizer, info = prune(
        MODEL, PruneConfig(sparsity=0.5, remove=["layers.1.attn.head.0"]), log=lambda _: None
    )
    assert all(torch.equal(v, before[k]) for k, v in MODEL.state_dict().items())
    assert list(info) == [
        "config",
        "removed",
        "heads_removed",
        "heads_total",
        "neurons_removed",
        "neurons_total",
        "layers_removed",
        "sparsity",
        "before",
        "after",
    ]
    assert info["sparsity"]["block_sparsity"] == pytest.approx(0.5, abs=0.01) and tokenizer is None
    _, _, only_zeros = prune(MODEL, PruneConfig(sparsity=0.3), log=lambda _: None)  # no structural step
    assert "removed" not in only_zeros
    assert all(torch.equal(v, before[k]) for k, v in MODEL.state_dict().items())


def test_named_particles_alone_go_in_one_round_whatever_the_steps():
    """Only budgets are spread over ``steps`` rounds; names and blocks have nothing left for round 2."""
    logs = []
    config = CompressConfig(prune=PruneConfig(remove=["layers.0.attn.head.1"]), steps=3, quantize=None)
    pruned, info, _ = _prune(MODEL, ToyClassification(), None, config, log=logs.append)
    assert [r["removed"] for r in info["rounds"]] == [["layers.0.attn.head.1"]]
    assert logs == ["prune round 1/1: 1/8 heads, 0/128 neurons, layers []"] and summary(pruned)["heads"] == 7
