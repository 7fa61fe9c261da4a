"""Fast inference gives what the plain padded path gives: the packed encoder (no work on padding) on batches mixing
lengths 1 to 128, against the padded pass and transformers; every hook point listening; neuron masks and pruned
models; the attention kernel chosen by shape; and the inference weight layout, undone for training."""

import pytest
import torch

from sora.analyze import hook_points
from sora.compress.plan import PrunePlan
from sora.compress.structural import prune_model
from sora.models import build_model, load_model, save_model
from sora.particles import attention as attention_module
from tests.helpers import tiny

LENGTHS = [1, 2, 7, 19, 33, 64, 100, 128]  # 65% of the (8, 128) batch is padding


def mixed_batch(vocab: int, lengths=LENGTHS, pad_id: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    valid = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    ids = torch.randint(1, vocab, valid.shape, generator=g)
    return ids.masked_fill(~valid, pad_id), valid


def padded_and_fast(model, *args):
    with torch.no_grad():  # the plain path: padded, SDPA, the usual weight layout
        padded = model(*args)
    with torch.inference_mode():
        fast = model(*args)
    return padded, fast


def test_packed_equals_padded_equals_transformers_on_lengths_1_to_128(tmp_path):
    transformers = pytest.importorskip("transformers")
    from sora.interop import import_hf
    from tests.interop.hf_models import make_hf_model

    hf = make_hf_model("BertModel", "bert", max_position_embeddings=130)
    hf.save_pretrained(tmp_path / "hf")
    model = import_hf(tmp_path / "hf").model
    ids, valid = mixed_batch(99)
    packed_rows = []
    model.layers[0].ffn.register_forward_pre_hook(lambda m, args: packed_rows.append(args[0].shape[:2]))
    padded, fast = padded_and_fast(model, ids, valid)
    assert packed_rows == [(8, 128), (1, sum(LENGTHS))]  # the fast pass ran on the real tokens alone
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=valid.long()).last_hidden_state
    assert isinstance(hf, transformers.BertModel)
    torch.testing.assert_close(fast[valid], padded[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(fast[valid], theirs[valid], atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ["encoder_classifier", "token_classifier"])
def test_with_every_hook_point_listening_inference_gives_the_padded_outputs(arch):
    torch.manual_seed(0)
    model = build_model(tiny(arch, max_len=128, pooling="mean")).eval()
    ids, valid = mixed_batch(50)
    unhooked = padded_and_fast(model, ids, valid)[1]
    seen = {}
    for name in hook_points(model):
        model.get_submodule(name).register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.shape))
    padded, fast = padded_and_fast(model, ids, valid)
    assert len(seen) == len(hook_points(model))  # every one fired
    real = valid if arch == "token_classifier" else slice(None)
    torch.testing.assert_close(fast[real], padded[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(fast[real], unhooked[real], atol=1e-5, rtol=0)


def test_neuron_masks_and_pruned_models_pack_to_the_same_outputs():
    torch.manual_seed(0)
    model = build_model(tiny(max_len=128, pooling="mean", encoder={"n_layers": 2, "n_heads": 4, "d_ff": 64})).eval()
    model.layers[1].ffn.neuron_mask[::3] = 0.0
    model.layers[0].attn.head_gate[2] = 0.0
    ids, valid = mixed_batch(50)
    torch.testing.assert_close(*padded_and_fast(model, ids, valid), atol=1e-5, rtol=0)
    pruned = prune_model(model, PrunePlan(heads={"layers.1.attn": {0, 3}}, neurons={"layers.0.ffn": set(range(40))}))
    torch.testing.assert_close(*padded_and_fast(pruned.eval(), ids, valid), atol=1e-5, rtol=0)


def test_the_explicit_kernel_chosen_for_short_keys_gives_sdpas_outputs(monkeypatch):
    torch.manual_seed(0)
    model = build_model(tiny(pooling="mean")).eval()
    ids, valid = mixed_batch(50, lengths=[24, 24, 20])  # no padding to pack at the longest
    chosen = []
    real = attention_module.explicit_wins
    monkeypatch.setattr(attention_module, "explicit_wins", lambda *a: chosen.append(real(*a)) or chosen[-1])
    padded, fast = padded_and_fast(model, ids, valid)
    assert chosen[:2] == [False, False] and chosen[-2:] == [True, True]  # no_grad: SDPA; inference: explicit
    torch.testing.assert_close(fast, padded, atol=1e-5, rtol=0)


def test_inference_stores_weights_column_major_and_training_gets_them_back(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny("decoder_lm", tie_embeddings=True)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        expected = model(ids)
    with torch.inference_mode():
        got = model(ids)
    weight = model.layers[0].attn.q_proj.weight
    assert weight.stride() == (1, weight.shape[0])  # (out, in) over (in, out) memory
    assert model.head.proj.weight is model.embed.tokens.weight  # still tied
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    save_model(model, tmp_path / "m")  # a column-major weight saves
    for key, value in load_model(tmp_path / "m").state_dict().items():
        assert torch.equal(value, before[key]), key
    model.train()
    assert model.layers[0].attn.q_proj.weight.is_contiguous()
    model(ids).sum().backward()  # and trains


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_training_skips_padding_and_unread_positions_with_the_same_gradients(pooling):
    """Training packs a padded batch and, for a CLS head, runs the last block's queries and FFN on position 0
    alone; a hook point listening forces the full pass, whose loss and gradients must be the same."""
    torch.manual_seed(0)
    model = build_model(tiny(max_len=128, pooling=pooling, dropout=0.0)).train()
    ids, valid = mixed_batch(50)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def loss_and_grads():
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(ids, valid), labels)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    rows = []
    model.layers[-1].ffn.register_forward_pre_hook(lambda m, args: rows.append(tuple(args[0].shape[:2])))
    fast_loss, fast = loss_and_grads()
    assert rows[-1] == ((8, 1) if pooling == "cls" else (1, int(valid.sum())))
    handle = model.layers[-1].attn.hook_q.register_forward_hook(lambda m, a, out: None)
    full_loss, full = loss_and_grads()
    handle.remove()
    assert rows[-1] == (8, 128)
    torch.testing.assert_close(fast_loss, full_loss, atol=1e-6, rtol=0)
    for name in full:
        torch.testing.assert_close(fast[name], full[name], atol=1e-6, rtol=1e-5, msg=name)
