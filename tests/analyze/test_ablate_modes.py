"""``ablate`` after its split into one patcher per run (issue 20, item 4): each mode puts exactly the
promised value where the particle's activation was, for every kind of particle, and leaves the model
as it was afterwards. test_analyze_tracing.py covers zero ablation and in-batch resampling of heads;
this covers the rest of the table: resampling from a source batch, and block and whole-layer means.
"""

from __future__ import annotations

import pytest
import torch

from sora.analyze import ablate, activation_means, caching, run_model, run_with_cache
from sora.errors import SoraError
from tests.analyze.batches import batch_for, model_for

MODEL = "text_classifier"


@pytest.fixture(scope="module")
def setting():
    model, task = model_for(MODEL)
    return model, task, batch_for(MODEL, seed=0), batch_for(MODEL, seed=1)


def test_resampling_from_a_source_batch_takes_the_source_activation(setting):
    model, task, batch, source = setting
    _, from_source = run_with_cache(model, source, task)
    with (
        torch.no_grad(),
        ablate(model, ["layers.0.attn.head.3", "layers.1"], "resample", source=source, task=task),
        caching(model, ["layers.0.attn.hook_z", "layers.1.hook_resid_*"]) as cache,
    ):
        run_model(model, batch, task)
    assert torch.equal(cache["layers.0.attn.hook_z"][:, :, 3], from_source["layers.0.attn.hook_z"][:, :, 3])
    contribution = from_source["layers.1.hook_resid_post"] - from_source["layers.1.hook_resid_pre"]
    torch.testing.assert_close(cache["layers.1.hook_resid_post"] - cache["layers.1.hook_resid_pre"], contribution)


def test_a_source_batch_needs_its_task_and_its_shape(setting):
    model, task, batch, _ = setting
    with pytest.raises(SoraError, match="needs task="):
        with ablate(model, "layers.0.attn.head.0", "resample", source=batch):
            pass
    short = batch_for(MODEL, B=4, T=5)
    with pytest.raises(SoraError, match=r"source activation \(4, 5, 4, 8\) differs"):
        with torch.no_grad(), ablate(model, "layers.0.attn.head.0", "resample", source=short, task=task):
            run_model(model, batch, task)


def test_mean_ablation_of_a_block_and_of_a_layer_puts_their_mean_output(setting):
    model, task, batch, source = setting
    particles = ["layers.0", "layers.1.attn"]
    means = activation_means(model, [batch, source], task, particles)
    assert means["layers.0"].shape == means["layers.1.attn"].shape == (32,)
    with (
        torch.no_grad(),
        ablate(model, particles, "mean", batches=[batch, source], task=task),
        caching(model, ["layers.0.hook_resid_*", "layers.1.attn.hook_out"]) as cache,
    ):
        run_model(model, batch, task)
    added = cache["layers.0.hook_resid_post"] - cache["layers.0.hook_resid_pre"]
    torch.testing.assert_close(added, means["layers.0"].expand_as(added))
    out = cache["layers.1.attn.hook_out"]
    assert torch.equal(out, means["layers.1.attn"].expand_as(out))


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_the_model_is_itself_again_after_an_ablation(setting, mode):
    model, task, batch, source = setting
    with torch.no_grad():
        intact = run_model(model, batch, task)
        with ablate(model, ["layers.0", "layers.1.ffn.neuron.3", "embed.tokens"], mode, batches=[source], task=task):
            ablated = run_model(model, batch, task)
        assert not torch.equal(ablated, intact)
        assert torch.equal(run_model(model, batch, task), intact)
