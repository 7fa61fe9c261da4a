"""Packed batches: at inference, the blocks of a bidirectional stack run on the real positions of a padded batch
alone, with the same outputs as the padded pass (within float error) for every kind of encoder, pruned, gated or
int8; never while a hook point listens, and not for a batch with little padding."""

import pytest
import torch

from sora.compress.quantize import quantize_model
from sora.models import build_model
from tests.helpers import tiny


def ragged(B=4, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (B, T), generator=g)
    valid = torch.arange(T)[None, :] < torch.tensor([T, 6, 3, 9])[:B, None]  # (B, T): 37% padding
    return ids.masked_fill(~valid, 0), valid


def outputs(model, *args):
    with torch.no_grad():  # the padded pass
        padded = model(*args)
    with torch.inference_mode():
        packed = model(*args)
    return padded, packed


def ffn_rows(model, run) -> list[tuple]:
    seen = []
    handle = model.layers[0].ffn.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[:2])))
    run()
    handle.remove()
    return seen


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("heads", [4, [4, 0], [0, 4]])
@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_a_packed_encoder_gives_the_padded_outputs(pooling, norm, heads, position):
    torch.manual_seed(0)
    config = tiny(
        pooling=pooling, norm_position=norm, position=position, encoder={"n_layers": 2, "n_heads": heads, "d_ff": 64}
    )
    padded, packed = outputs(build_model(config).eval(), *ragged())
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)


def test_taggers_gated_heads_and_int8_models_pack_too():
    torch.manual_seed(0)
    tagger = build_model(tiny("token_classifier")).eval()
    ids, valid = ragged()
    padded, packed = outputs(tagger, ids, valid)
    torch.testing.assert_close(packed[valid], padded[valid], atol=1e-5, rtol=0)  # real positions agree
    gated = build_model(tiny()).eval()
    gated.layers[0].attn.head_gate[1] = 0.0
    torch.testing.assert_close(*outputs(gated, ids, valid)[::-1], atol=1e-5, rtol=0)
    int8 = quantize_model(build_model(tiny(d_model=64, encoder={"n_layers": 2, "n_heads": 4, "d_ff": 128})))
    torch.testing.assert_close(*outputs(int8, ids, valid)[::-1], atol=1e-4, rtol=0)


def test_a_seq2seq_encoder_packs_and_translates_the_same():
    torch.manual_seed(0)
    model = build_model(tiny("seq2seq")).eval()
    src, valid = ragged()
    with torch.no_grad():
        padded = model.generate(src, 8, src_valid=valid)
    with torch.inference_mode():
        packed = model.generate(src, 8, src_valid=valid)
    assert packed == padded


def test_packing_runs_only_at_inference_on_padded_batches_with_no_listener():
    torch.manual_seed(0)
    model = build_model(tiny(pooling="mean")).eval()
    ids, valid = ragged()
    with torch.inference_mode():
        assert ffn_rows(model, lambda: model(ids, valid)) == [(1, int(valid.sum()))]
        full = torch.ones_like(valid)
        assert ffn_rows(model, lambda: model(ids, full)) == [(4, 12)]  # no padding: nothing to skip
    with torch.no_grad():
        assert ffn_rows(model, lambda: model(ids, valid)) == [(4, 12)]  # training, analysis: the usual shapes
    model.layers[0].attn.hook_q.register_forward_hook(lambda m, args, out: None)
    with torch.inference_mode():
        assert ffn_rows(model, lambda: model(ids, valid)) == [(4, 12)]  # a listener sees (B, T)
