import numpy as np
import pytest
import torch

from sora.analyze import ablation_scores, agreement, gradient_scores, loss_and_metric, score, spearman
from sora.models.names import block_paths, head_names
from tests.analyze.batches import ASSEMBLIES, CARRIER, batch_for, model_for, one_head_model


@pytest.mark.parametrize("name", [n for n in ASSEMBLIES])
def test_scores_are_finite_with_the_right_shapes_and_names(name):
    model, task = model_for(name)
    batches = [batch_for(name, seed=s) for s in range(2)]
    g = gradient_scores(model, batches, task)
    attn = {p: m.n_heads for p, m in model.named_modules() if hasattr(m, "head_gate")}
    assert set(g.heads) == set(attn) and all(g.heads[p].shape == (n,) for p, n in attn.items())
    for p, scores in g.heads.items():
        assert np.isfinite(scores).all() and (scores >= 0).all()
        assert np.linalg.norm(scores) == pytest.approx(1.0)  # normalised per layer
    assert all(np.isfinite(t).all() and t.shape == (64,) for t in g.taylor.values())
    assert set(g.taylor) == {p for p, m in model.named_modules() if hasattr(m, "neuron_mask")}
    abl = ablation_scores(model, batches, task, head_names(model)[:2] + block_paths(model)[:1])
    assert all(np.isfinite([v["loss"], v["metric"]]).all() for v in abl.values())


def test_head_importance_is_the_expected_absolute_gate_gradient_over_examples():
    model, task = model_for("text_classifier")
    batch = batch_for("text_classifier", B=3)
    g = gradient_scores(model, [batch], task)
    gate = model.layers[1].attn.head_gate
    per_example = []
    for b in range(3):  # brute force: one backward per example through the real gate
        one = {k: v[b : b + 1] for k, v in batch.items()}
        gate.requires_grad_(True)
        (grad,) = torch.autograd.grad(score(model, one, task).losses.sum(), gate)
        gate.requires_grad_(False)
        per_example.append(grad.abs())
    expected = torch.stack(per_example).mean(0).double().numpy()
    np.testing.assert_allclose(g.heads_raw["layers.1.attn"], expected, rtol=1e-4, atol=1e-7)


def test_the_head_that_carries_the_signal_ranks_first():
    model, batches = one_head_model()
    assert loss_and_metric(model, batches, "classification")["metric"] > 0.95
    g = gradient_scores(model, batches, "classification")
    ranked = sorted(((s, f"{p}.head.{h}") for p, v in g.heads.items() for h, s in enumerate(v)), reverse=True)
    assert ranked[0][1] == CARRIER
    abl = ablation_scores(model, batches, "classification", head_names(model))
    assert min(abl, key=lambda n: abl[n]["metric"]) == CARRIER and abl[CARRIER]["metric"] < -0.3
    assert max(abl, key=lambda n: abl[n]["loss"]) == CARRIER


def test_spearman_agreement():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    out = agreement({"a": [1, 2, 3], "b": [1, 2, 3], "c": [3, 2, 1]})
    assert out == {"a ~ b": pytest.approx(1.0), "a ~ c": pytest.approx(-1.0), "b ~ c": pytest.approx(-1.0)}
