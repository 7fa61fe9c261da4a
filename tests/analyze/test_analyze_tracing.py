import pytest
import torch
import torch.nn.functional as F

from sora.analyze import ablate, activation_means, caching, hook_points, hooks, run_model, run_with_cache, select_hooks
from sora.errors import SoraError
from sora.particles import attention_mask
from tests.analyze.batches import ASSEMBLIES, batch_for, model_for


def test_cache_matches_the_forward_pass_computed_by_hand():
    model, task = model_for("text_classifier")
    batch = batch_for("text_classifier")
    logits, cache = run_with_cache(model, batch, task)
    block = model.layers[1]
    x = cache["layers.1.hook_resid_pre"]  # (B, T, d)
    mask = attention_mask(batch["valid"], q_len=x.shape[1], k_len=x.shape[1], causal=False)
    attn_out, weights = block.attn(block.attn_norm(x), mask=mask, need_weights=True)
    torch.testing.assert_close(cache["layers.1.attn.hook_out"], attn_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(cache["layers.1.attn.hook_pattern"], weights, atol=1e-6, rtol=0)
    z = cache["layers.1.attn.hook_z"]  # (B, T, H, dh)
    torch.testing.assert_close(block.attn.out_proj(z.flatten(2)), cache["layers.1.attn.hook_out"])
    mid = x + cache["layers.1.attn.hook_out"]
    torch.testing.assert_close(cache["layers.1.hook_resid_mid"], mid)
    post = F.gelu(block.ffn.fc_in(block.ffn_norm(mid)))
    torch.testing.assert_close(cache["layers.1.ffn.hook_post"], post)
    torch.testing.assert_close(cache["layers.1.hook_resid_post"], mid + cache["layers.1.ffn.hook_out"])
    h = model.final_norm(cache["layers.1.hook_resid_post"])
    torch.testing.assert_close(model.head(h, batch["valid"]), logits)


@pytest.mark.parametrize("name", list(ASSEMBLIES))
def test_pass_through_hooks_leave_outputs_bit_identical(name):
    model, task = model_for(name)
    batch = batch_for(name)
    with torch.no_grad():
        before = run_model(model, batch, task)
        logits, cache = run_with_cache(model, batch, task)  # every hook point, patterns included
        with hooks(model, {n: (lambda x, n: None) for n in hook_points(model) if not n.endswith("hook_pattern")}):
            hooked = run_model(model, batch, task)
    assert torch.equal(before, logits) and torch.equal(before, hooked)
    patterns = [n for n in cache if n.endswith("hook_pattern")]
    assert patterns and all(torch.allclose(cache[n].sum(-1), torch.ones(())) for n in patterns)
    if name == "seq2seq":
        assert cache["decoder.layers.0.cross_attn.hook_pattern"].shape == (4, 2, 8, 9)  # (B, H, T, S)


def test_cached_rotary_patterns_equal_the_explicit_path():
    from sora.models import build_model
    from tests.helpers import tiny

    model = build_model(tiny("decoder_lm", position="rotary")).eval()
    batch = batch_for("lm")
    _, cache = run_with_cache(model, batch, "lm", "layers.0.*")
    assert set(cache) == {n for n in hook_points(model) if n.startswith("layers.0.")}
    model.layers[0].attn.explicit = True
    _, explicit = run_with_cache(model, batch, "lm", "layers.0.attn.hook_pattern")
    torch.testing.assert_close(cache["layers.0.attn.hook_pattern"], explicit["layers.0.attn.hook_pattern"])


def test_select_hooks_by_glob_list_and_predicate():
    model, _ = model_for("seq2seq")
    cross = select_hooks(model, "decoder.layers.*.cross_attn.hook_z")
    assert cross == ["decoder.layers.0.cross_attn.hook_z", "decoder.layers.1.cross_attn.hook_z"]
    assert select_hooks(model, ["encoder.embed.hook_out", "decoder.layers.1.hook_resid_post"]) == [
        "encoder.embed.hook_out",
        "decoder.layers.1.hook_resid_post",
    ]
    assert all(n.endswith("hook_post") for n in select_hooks(model, lambda n: n.endswith("ffn.hook_post")))
    with pytest.raises(SoraError, match="matches no hook point"):
        select_hooks(model, "layers.9.*")


def test_replacing_hooks_change_outputs_only_inside_the_context():
    model, task = model_for("text_classifier")
    batch = batch_for("text_classifier")
    with torch.no_grad():
        before = run_model(model, batch, task)
        with hooks(model, {"layers.0.attn.hook_pattern": lambda p, n: torch.full_like(p, 1.0 / p.shape[-1])}):
            uniform = run_model(model, batch, task)
        after = run_model(model, batch, task)
    assert not torch.allclose(before, uniform) and torch.equal(before, after)
    with pytest.raises(SoraError, match="not a hook point"):
        with hooks(model, {"layers.0.attn": lambda x, n: None}):
            pass


@pytest.mark.parametrize(
    "name,head",
    [
        ("text_classifier", "layers.1.attn.head.2"),
        ("seq2seq", "decoder.layers.0.cross_attn.head.1"),
        ("image_classifier", "layers.0.attn.head.0"),
    ],
)
def test_zero_ablating_a_head_equals_gate_zero(name, head):
    model, task = model_for(name)
    batch = batch_for(name)
    path, h = head.rsplit(".head.", 1)
    with torch.no_grad():
        intact = run_model(model, batch, task)
        with ablate(model, head, "zero"):
            ablated = run_model(model, batch, task)
        model.get_submodule(path).head_gate[int(h)] = 0.0
        gated = run_model(model, batch, task)
    torch.testing.assert_close(ablated, gated, atol=1e-6, rtol=0)
    assert not torch.allclose(ablated, intact)  # the head did something


def test_mean_and_resample_ablation_replace_exactly_that_slice():
    model, task = model_for("text_classifier")
    batches = [batch_for("text_classifier", seed=s) for s in range(3)]
    means = activation_means(model, batches, task, ["layers.0.attn.head.1", "layers.1.ffn.neuron.5"])
    assert means["layers.0.attn.head.1"].shape == (4, 8) and means["layers.1.ffn.neuron.5"].shape == (64,)
    batch = batches[0]
    _, intact = run_with_cache(model, batch, task)
    with (
        ablate(model, ["layers.0.attn.head.1", "layers.1.ffn.neuron.5"], "mean", means=means),
        caching(model, ["layers.0.attn.hook_z", "layers.1.ffn.hook_post"]) as cache,
    ):
        run_model(model, batch, task)
    z = cache["layers.0.attn.hook_z"]
    assert torch.equal(z[:, :, 1], means["layers.0.attn.head.1"][1].expand_as(z[:, :, 1]))
    assert torch.equal(z[:, :, 0], intact["layers.0.attn.hook_z"][:, :, 0])  # other heads untouched
    assert torch.allclose(cache["layers.1.ffn.hook_post"][..., 5], means["layers.1.ffn.neuron.5"][5])
    with ablate(model, "layers.0.attn.head.3", "resample"), caching(model, "layers.0.attn.hook_z") as cache:
        run_model(model, batch, task)
    assert torch.equal(cache["layers.0.attn.hook_z"][:, :, 3], intact["layers.0.attn.hook_z"].roll(1, 0)[:, :, 3])


def test_zero_ablating_a_block_skips_it():
    model, task = model_for("text_classifier")
    batch = batch_for("text_classifier")
    with ablate(model, "layers.1"), caching(model, "layers.1.hook_resid_*") as cache:
        run_model(model, batch, task)
    assert torch.equal(cache["layers.1.hook_resid_post"], cache["layers.1.hook_resid_pre"])
    with pytest.raises(SoraError, match="unknown particle"):
        with ablate(model, "layers.7.attn.head.0"):
            pass
    with pytest.raises(SoraError, match="ablation mode"):
        with ablate(model, "layers.0", "shuffle"):
            pass
