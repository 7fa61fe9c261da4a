"""Generation with the preallocated KV cache gives the tokens that recomputing every step gives: decoder LM and
seq2seq, greedy and beam; and the cache itself holds what concatenation would have held."""

import pytest
import torch

from sora.models import build_model
from sora.models.beam import lm_beam_search
from sora.particles import KVCache
from tests.helpers import sharp_lm, tiny


def seq2seq():
    torch.manual_seed(1)
    model = build_model(tiny("seq2seq")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    return model


def test_kv_cache_preallocated_holds_what_concatenation_holds():
    g = torch.Generator().manual_seed(0)
    steps = [torch.randn(3, 2, n, 4, generator=g) for n in (5, 1, 1, 4)]  # (B, H, T, dh): a prompt, then steps
    grown, prealloc = KVCache(), KVCache(capacity=8)  # 11 positions: the buffers must grow past 8 once
    for t in steps:
        k1, v1 = grown.extend(t, -t)
        k2, v2 = prealloc.extend(t, -t)
        assert torch.equal(k1, k2) and torch.equal(v1, v2)
    rows = torch.tensor([2, 2, 0])
    grown.reorder(rows), prealloc.reorder(rows)
    assert torch.equal(grown.k, prealloc.k) and prealloc.length == 11
    grown.reorder(rows[:2]), prealloc.reorder(rows[:2])  # fewer rows
    assert torch.equal(grown.v, prealloc.v) and prealloc.v.shape == (2, 2, 11, 4)
    step = torch.randn(2, 2, 1, 4, generator=g)
    assert torch.equal(grown.extend(step, step)[0], prealloc.extend(step, step)[0])


@pytest.mark.parametrize("batch", [1, 3])
def test_lm_greedy_with_the_cache_equals_recomputation(batch):
    model = sharp_lm()
    prompts = torch.randint(3, 50, (batch, 5), generator=torch.Generator().manual_seed(batch))
    cached = model.generate(prompts, 40, use_cache=True)
    recomputed = model.generate(prompts, 40, use_cache=False)
    assert cached.shape == (batch, 45)
    assert torch.equal(cached, recomputed)
    assert torch.equal(cached[:, :5], prompts)


def test_lm_beam_with_the_cache_equals_recomputation():
    model = sharp_lm()
    prompts = torch.randint(3, 50, (2, 4), generator=torch.Generator().manual_seed(0))
    cached = lm_beam_search(model, prompts, beam=3, max_new_tokens=20)
    assert cached == lm_beam_search(model, prompts, beam=3, max_new_tokens=20, use_cache=False)
    assert all(len(row) > 0 for row in cached)


def test_lm_sliding_window_still_generates_past_max_len():
    model = sharp_lm(max_len=16)
    out = model.generate(torch.randint(3, 50, (2, 6)), 30)  # the cache restarts twice
    assert out.shape == (2, 36)


@pytest.mark.parametrize("beam", [1, 3])
def test_seq2seq_with_the_cache_equals_recomputation(beam):
    model = seq2seq()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, 50, (3, 9), generator=g)
    valid = torch.arange(9)[None, :] < torch.tensor([9, 5, 2])[:, None]
    src = src.masked_fill(~valid, 0)
    cached = model.generate(src, 30, beam=beam, src_valid=valid)
    recomputed = model.generate(src, 30, beam=beam, src_valid=valid, use_cache=False)
    assert cached == recomputed
    assert any(len(row) > 3 for row in cached)  # long enough to exercise the cache
