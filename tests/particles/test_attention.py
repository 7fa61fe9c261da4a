import pytest
import torch

from sora.particles import AdaptiveSpan, KVCache, MultiHeadAttention, Rotary, attention_mask


def make(n_heads=4, **kw):
    return MultiHeadAttention(32, n_heads, 8, **kw).eval()


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_path_equals_explicit_path(causal):
    attn = make(rotary=Rotary(8, 64))
    x = torch.randn(2, 7, 32)
    valid = torch.tensor([[1] * 7, [1] * 4 + [0] * 3], dtype=torch.bool)
    mask = attention_mask(valid, q_len=7, k_len=7, causal=causal)
    fast, no_weights = attn(x, mask=mask)
    slow, weights = attn(x, mask=mask, need_weights=True)
    assert no_weights is None and weights.shape == (2, 4, 7, 7)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 7))
    assert (weights[1, :, :, 4:] < 1e-6).all()  # padded keys get no attention


def test_gate_zero_equals_model_built_without_that_head():
    full = make(4)
    pruned = make(3)
    keep = [0, 1, 3]
    rows = torch.cat([torch.arange(h * 8, (h + 1) * 8) for h in keep])
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj"):
            getattr(pruned, name).weight.copy_(getattr(full, name).weight[rows])
            getattr(pruned, name).bias.copy_(getattr(full, name).bias[rows])
        pruned.out_proj.weight.copy_(full.out_proj.weight[:, rows])
        pruned.out_proj.bias.copy_(full.out_proj.bias)
    x = torch.randn(2, 5, 32)
    ungated = full(x)[0]  # all gates one: the forward pass skips the gate and remembers that
    full.head_gate[2] = 0  # written in place after that: the next pass must see it
    torch.testing.assert_close(full(x)[0], pruned(x)[0], atol=1e-6, rtol=0)
    full.head_gate.fill_(1)
    torch.testing.assert_close(full(x)[0], ungated, atol=0, rtol=0)


def test_zero_heads_adds_only_the_output_bias():
    attn = make(0)
    x = torch.randn(2, 5, 32)
    out, weights = attn(x, need_weights=True)
    assert weights is None
    torch.testing.assert_close(out, torch.zeros(2, 5, 32))  # built with zero heads: passes nothing


def test_kv_cache_steps_equal_full_causal_pass():
    attn = make(rotary=Rotary(8, 64))
    x = torch.randn(2, 6, 32)
    full, _ = attn(x, mask=attention_mask(None, q_len=6, k_len=6, causal=True))
    cache = KVCache()
    steps = []
    for t in range(6):
        mask = attention_mask(None, q_len=1, k_len=t + 1, causal=True)
        steps.append(attn(x[:, t : t + 1], mask=mask, cache=cache)[0])
    assert cache.length == 6
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_cross_attention_reads_memory():
    attn = make(2, cross=True)
    x, memory = torch.randn(2, 3, 32), torch.randn(2, 9, 32)
    out, weights = attn(x, memory, need_weights=True)
    assert out.shape == (2, 3, 32) and weights.shape == (2, 2, 3, 9)


def test_adaptive_span_masks_far_keys_and_penalty_has_gradient():
    span = AdaptiveSpan(n_heads=4, max_span=16, ramp=4, init=0.25)  # span 4 + ramp 4
    attn = make(adaptive_span=span)
    x = torch.randn(1, 20, 32)
    _, weights = attn(x, mask=attention_mask(None, q_len=20, k_len=20, causal=True), need_weights=True)
    last_query = weights[0, :, -1]  # (H, S) query at position 19
    assert (last_query[:, : 19 - 8] == 0).all()  # distance >= span + ramp: masked exactly
    assert (last_query[:, 19 - 3 :] > 0).all()
    torch.testing.assert_close(last_query.sum(-1), torch.ones(4))
    penalty = span.penalty()
    penalty.backward()
    assert span.span_fraction.grad is not None and (span.span_fraction.grad != 0).all()
    # the loss also reaches the span: attention output depends on it
    span.span_fraction.grad = None
    out, _ = attn(x, mask=attention_mask(None, q_len=20, k_len=20, causal=True))
    out.sum().backward()
    assert span.span_fraction.grad.abs().sum() > 0
