"""The ranking check: every ranking against random order, a verdict beyond the noise, and the one to prune by."""

import numpy as np
import pytest

from sora.analyze import analyze_model, gradient_scores
from sora.analyze import rankings as R
from sora.analyze.checked_rankings import head_rankings, neuron_rankings
from sora.analyze.checks import check_rankings, order_of
from sora.analyze.curve_stats import Bootstrap, against_random, auc, prunable
from sora.analyze.masking import MaskedEval, units_off
from sora.compress.config import PruneConfig
from sora.compress.plan import plan_from_scores
from sora.compress.prune import prune
from sora.compress.scores import checked_scores, read_choice, read_scores
from sora.models import build_model
from tests.analyze.batches import CARRIER, one_head_model
from tests.helpers import tiny


@pytest.fixture(scope="module")
def carrier():
    return one_head_model(n_batches=2)


def test_the_carrier_head_is_removed_last_under_every_head_ranking(carrier):
    model, batches = carrier
    grads = gradient_scores(model, batches, "classification")
    for name, scores in head_rankings(model, batches, "classification", list(R.HEAD_RANKINGS), grads).items():
        assert order_of(scores, list(scores))[-1] == CARRIER, name


def test_every_neuron_ranking_is_checked_and_none_loses_to_random(carrier):
    model, batches = carrier
    grads = gradient_scores(model, batches, "classification")
    scores = neuron_rankings(model, batches, "classification", list(R.NEURON_RANKINGS), grads)
    units = list(scores["taylor"])
    check = check_rankings(MaskedEval(model, batches, "classification"), units, scores, steps=8, seeds=3)
    assert set(check["rankings"]) == set(R.NEURON_RANKINGS) and check["examples"] == 128
    assert check["best"] in R.NEURON_RANKINGS and check["scores"] == scores[check["best"]]


def test_a_misleading_gradient_ranking_is_flagged_first_and_never_used(carrier, tmp_path, monkeypatch):
    model, batches = carrier
    honest = R.head_scores
    monkeypatch.setattr(R, "head_scores", lambda g, r: {k: -v for k, v in honest(g, r).items()})  # carrier first
    config = {"methods": ["gradient", "pruning"], "rankings": ["gradient", "iterative"], "neuron_rankings": []}
    result = analyze_model(model, batches, config, tmp_path / "a", task="classification")
    check = result["rankings"]["heads"]
    assert check["flagged"] == ["gradient"] and check["best"] == "iterative"
    assert check["rankings"]["gradient"]["loses_at"]  # the fractions where it is below random beyond the noise
    first = result["summary"]["ranking_check"][0]
    assert "'gradient' is WORSE THAN RANDOM" in first
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.index("worse than random order") < html.index("Most important heads")

    # compression reads the analysis' choice: the carrier survives half the heads going
    scores, choice = read_scores(tmp_path / "a" / "analysis.json"), read_choice(tmp_path / "a" / "analysis.json")
    assert choice["heads"]["ranking"] == "iterative" and choice["heads"]["worse_than_random"] == ["gradient"]
    assert 2 not in plan_from_scores(model, scores, heads=0.5, normalize=False).heads.get("layers.0.attn", set())
    _, _, info = prune(model, PruneConfig(heads=0.5, scores=str(tmp_path / "a" / "analysis.json")), log=print)
    assert CARRIER not in info["removed"] and len([n for n in info["removed"] if ".head." in n]) == 4

    # and, without an analysis, checks the rankings itself and falls back the same way
    scores, choice = checked_scores(model, batches, neurons=False)
    assert choice["heads"]["ranking"] != "gradient" and "gradient" in choice["heads"]["worse_than_random"]
    assert order_of(scores, list(scores))[-1] == CARRIER


def test_noise_decides_the_verdict():
    rng = np.random.default_rng(0)
    totals = np.ones(400)
    boot = Bootstrap(totals, resamples=100)
    randoms = [(rng.random((5, 400)) < 0.8).astype(float) for _ in range(4)]
    same = (rng.random((5, 400)) < 0.8).astype(float)
    worse = same.copy()
    worse[2:, :200] = 0.0  # half the examples lost from the third point on
    fractions = [0, 0.25, 0.5, 0.75, 1.0]
    assert not against_random(fractions, same, randoms, totals, boot)["worse_than_random"]
    verdict = against_random(fractions, worse, randoms, totals, boot)
    assert verdict["loses_at"] == [0.5, 0.75, 1.0]


def test_area_and_prunable_fraction():
    fractions = [0, 0.25, 0.5, 0.75, 1.0]
    assert auc(fractions, [1.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert auc(fractions, [1.0, 1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.375)
    assert prunable(fractions, [0.9, 0.895, 0.85, 0.9, 0.5]) == 0.25
    assert prunable(fractions, [0.9, 0.9, 0.9, 0.9, 0.9]) == 1.0
    both = prunable(fractions, np.array([[0.9, 0.9], [0.9, 0.5], [0.5, 0.9], [0.5, 0.5], [0.5, 0.5]]))
    assert both.tolist() == [0.25, 0.0]  # one column per resample


def test_units_off_restores_gates_and_masks(carrier):
    model, _ = carrier
    with units_off(model, ["layers.0.attn.head.1", "layers.1.ffn.neuron.3"]):
        assert model.layers[0].attn.head_gate[1] == 0 and model.layers[1].ffn.neuron_mask[3] == 0
    assert model.layers[0].attn.head_gate.min() == 1 and model.layers[1].ffn.neuron_mask.min() == 1


def test_a_feature_extractor_reports_no_taylor_scores(tmp_path):
    from tests.analyze.batches import batch_for

    model = build_model(tiny(arch="encoder", encoder={"n_layers": 2, "n_heads": 4, "d_ff": 64})).eval()
    batch = batch_for("text_classifier")
    batch.pop("labels")
    result = analyze_model(model, [batch], {"methods": ["neurons", "pruning"]}, tmp_path / "f")
    for layer in result["neurons"].values():
        assert layer["taylor"] is None and all("taylor" not in t for t in layer["top"])
        assert any(v > 0 for v in layer["mean_abs"])
    assert "rankings" not in result  # no loss: nothing to check a ranking against


def test_reconstruction_lets_a_twin_head_stand_in_for_the_one_removed():
    """Head 1 is an exact copy of head 0: with head 1 removed, least squares gives head 0 a gate of 2 and the
    layer's output is whole again (Kwon et al.'s mask tuning)."""
    import torch

    from sora.analyze.reconstruct import intact_outputs, tuned_gates
    from tests.analyze.batches import batch_for

    model = build_model(tiny(bias=True)).eval()
    attn, dh = model.layers[0].attn, model.config.head_dim
    with torch.no_grad():
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[dh : 2 * dh] = proj.weight[:dh]
            proj.bias[dh : 2 * dh] = proj.bias[:dh]
        attn.out_proj.weight[:, dh : 2 * dh] = attn.out_proj.weight[:, :dh]
    batches = [batch_for("text_classifier", B=8, seed=s) for s in range(2)]
    targets = intact_outputs(model, batches, "classification")
    values = tuned_gates(model, batches, "classification", ["layers.0.attn.head.1"], targets)
    assert values["layers.0.attn.head.0"] == pytest.approx(2.0, abs=1e-2)
    assert values["layers.0.attn.head.2"] == pytest.approx(1.0, abs=1e-2)
    assert not any(name.startswith("layers.1") for name in values)  # a layer that lost nothing is left alone
