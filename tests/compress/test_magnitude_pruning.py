"""Unstructured magnitude pruning: the target sparsity, made permanent, and reported."""

import pytest

from sora.compress import magnitude_prune, sparsity_report
from sora.errors import SoraError
from sora.models import build_model, load_model, save_model
from tests.helpers import tiny


def test_global_sparsity_is_reached_and_survives_a_reload(tmp_path):
    model = build_model(tiny())
    report = magnitude_prune(model, 0.6, scope="global")
    assert report["block_sparsity"] == pytest.approx(0.6, abs=0.001)
    assert 0 < report["parameter_sparsity"] < report["block_sparsity"]  # embeddings and norms are left alone
    per_matrix = [m["sparsity"] for m in report["matrices"]]
    assert max(per_matrix) - min(per_matrix) > 0.01  # one threshold: matrices end up different
    save_model(model, tmp_path / "m")
    assert sparsity_report(load_model(tmp_path / "m"))["block_zeros"] == report["block_zeros"]
    assert not any("mask" in n and "orig" in n for n, _ in model.named_buffers())  # no torch.nn.utils.prune leftovers


def test_per_layer_sparsity_hits_every_matrix():
    model = build_model(tiny(activation="swiglu"))
    report = magnitude_prune(model, 0.25, scope="per_layer")
    assert all(m["sparsity"] == pytest.approx(0.25, abs=0.002) for m in report["matrices"])
    w = model.layers[0].ffn.fc_gate.weight  # zeros are written into the weight itself, not kept in a mask
    assert (w == 0).float().mean().item() == pytest.approx(0.25, abs=0.002)


def test_smallest_weights_go_first():
    model = build_model(tiny())
    w = model.layers[0].attn.q_proj.weight
    before = w.detach().abs().clone()
    magnitude_prune(model, 0.5, scope="per_layer")
    assert before[w == 0].max() <= before[w != 0].min()


@pytest.mark.parametrize("sparsity", [1.2, -0.1])
def test_bad_sparsity_fails_clearly(sparsity):
    with pytest.raises(SoraError, match="not between 0% and 100%"):
        magnitude_prune(build_model(tiny()), sparsity)
