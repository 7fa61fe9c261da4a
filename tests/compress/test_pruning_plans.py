"""Plans from importance scores and budgets; scores read from analysis.json; bad plans fail clearly."""

import json

import pytest
import torch

from sora.compress import PruneConfig, magnitude_scores, plan_from_scores, prune_model, read_scores
from sora.configio import load
from sora.errors import ConfigError, SoraError
from sora.models import build_model
from tests.helpers import tiny


def _scores(model):
    """Layer 0's heads all matter less than layer 1's; within a layer, head h scores h + 1."""
    scores = {}
    for layer in range(2):
        for h in range(4):
            scores[f"layers.{layer}.attn.head.{h}"] = (h + 1) * (1 if layer == 0 else 10)
        for i in range(64):
            scores[f"layers.{layer}.ffn.neuron.{i}"] = float(i)
    return scores


def test_global_budget_can_empty_a_layer():
    model = build_model(tiny())
    plan = plan_from_scores(model, _scores(model), heads=0.5, scope="global", normalize=False)
    assert plan.heads == {"layers.0.attn": {0, 1, 2, 3}}
    pruned = prune_model(model, plan)
    assert pruned.config.encoder.n_heads == [0, 4]


def test_per_layer_budget_takes_the_same_share_of_every_layer():
    model = build_model(tiny())
    plan = plan_from_scores(model, _scores(model), heads=0.5, neurons=0.25, scope="per_layer")
    assert plan.heads == {"layers.0.attn": {0, 1}, "layers.1.attn": {0, 1}}
    assert plan.neurons["layers.1.ffn"] == set(range(16))
    assert plan.summary(model)["heads_removed"] == 4 and plan.summary(model)["neurons_removed"] == 32


def test_global_ranking_normalises_each_layer_by_default():
    model = build_model(tiny())
    plan = plan_from_scores(model, _scores(model), heads=0.5)  # after L2 normalisation the layers look alike
    assert plan.heads == {"layers.0.attn": {0, 1}, "layers.1.attn": {0, 1}}


def test_budget_over_100_percent_fails_clearly(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("remove: [layers.0.attn.head.1]\nheads: 1.5\n")
    with pytest.raises(ConfigError, match=r"plan.yaml:2: heads: .*150% is over 100% of the heads"):
        load(PruneConfig, path)
    with pytest.raises(SoraError, match="not between 0% and 100%"):
        plan_from_scores(build_model(tiny()), _scores(None), heads=2.0)


def test_scores_must_cover_the_model():
    model = build_model(tiny())
    scores = _scores(model)
    del scores["layers.1.attn.head.2"]
    with pytest.raises(SoraError, match=r"analysis.json: no importance score for 1 head.*layers.1.attn.head.2"):
        plan_from_scores(model, scores, heads=0.5, source="analysis.json")


def test_read_scores_from_analysis_json_sections(tmp_path):
    analysis = {
        "task": "classification",
        "heads": [
            {"name": "layers.0.attn.head.0", "gradient": 0.3, "ablation": {"loss": 0.1}},
            {"name": "layers.0.attn.head.1", "ablation": {"loss": 0.02}},
        ],
        "neurons": {
            "layers.0.ffn": {
                "neurons": 2,
                "taylor": [0.5, 0.25],
                "top": [{"name": "layers.0.ffn.neuron.0", "taylor": 0.5}],
            }
        },
    }
    (tmp_path / "analysis.json").write_text(json.dumps(analysis))
    assert read_scores(tmp_path / "analysis.json") == {
        "layers.0.attn.head.0": 0.3,
        "layers.0.attn.head.1": 0.02,
        "layers.0.ffn.neuron.0": 0.5,
        "layers.0.ffn.neuron.1": 0.25,
    }
    (tmp_path / "flat.json").write_text(json.dumps({"importance": {"layers.1.attn.head.3": 1.5}}))
    assert read_scores(tmp_path / "flat.json") == {"layers.1.attn.head.3": 1.5}


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "flat.json:1: not valid JSON"),
        ('{"task": "lm"}', "no importance scores found"),
    ],
)
def test_bad_score_files_fail_clearly(tmp_path, text, message):
    (tmp_path / "flat.json").write_text(text)
    with pytest.raises(SoraError, match=message):
        read_scores(tmp_path / "flat.json")


def test_magnitude_scores_see_gates_and_sizes():
    model = build_model(tiny(activation="swiglu"))
    with torch.no_grad():
        model.layers[0].attn.v_proj.weight[8:16] *= 10  # head 1 writes much more
        model.layers[1].attn.head_gate[2] = 0  # head 2 is switched off
    scores = magnitude_scores(model)
    layer0 = [scores[f"layers.0.attn.head.{h}"] for h in range(4)]
    assert max(layer0) == layer0[1] and scores["layers.1.attn.head.2"] == 0
    assert len([k for k in scores if ".neuron." in k]) == 128
