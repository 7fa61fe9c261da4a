import pytest
import torch

from sora.models import build_model
from tests.helpers import tiny


@pytest.mark.parametrize(
    "config, inputs, expected",
    [
        (tiny("encoder_classifier"), torch.randint(3, 50, (2, 9)), (2, 3)),
        (tiny("encoder_classifier", input="image", image={"size": 28, "patch": 4}), torch.randn(2, 1, 28, 28), (2, 3)),
        (tiny("encoder_classifier", input="image", image={"size": 8, "patch": 2}), torch.randn(2, 1, 8, 8), (2, 3)),
        (
            tiny("encoder_classifier", input="audio", audio={"n_mels": 16, "patch_frames": 4}),
            torch.randn(2, 16, 40),
            (2, 3),
        ),
        (
            tiny("token_classifier", input="audio", audio={"n_mels": 16, "patch_frames": 4}),
            torch.randn(2, 16, 40),
            (2, 10, 3),
        ),
        (tiny("token_classifier"), torch.randint(3, 50, (2, 9)), (2, 9, 3)),
        (tiny("decoder_lm"), torch.randint(3, 50, (2, 9)), (2, 9, 50)),
    ],
    ids=["text", "image28", "digits8", "audio", "audio-ctc", "tagger", "decoder"],
)
def test_output_shapes(config, inputs, expected):
    assert build_model(config).eval()(inputs).shape == expected


def test_a_conv_stem_gives_the_same_tokens_each_seeing_past_its_patch():
    """Pixel (0, 3) lies in the first 4x4 patch: a plain patch stem's second patch token ignores it; the conv
    stem's (its 3x3 convolutions overlap into the patch before) does not."""
    image = torch.randn(1, 1, 28, 28)
    nudged = image.clone()
    nudged[0, 0, 0, 3] += 1.0
    tokens = {}
    for stem in ("patch", "conv"):
        embed = build_model(tiny("encoder_classifier", input="image", image={"size": 28, "patch": 4, "stem": stem}))
        patches = embed.embed.patches
        before, after = patches(image), patches(nudged)  # (1, 1 + 49, d): CLS first
        assert before.shape == (1, 50, embed.config.d_model)
        tokens[stem] = (after - before)[0, 2].abs().max().item()  # the second patch's token
    assert tokens["patch"] == 0 and tokens["conv"] > 0


def test_seq2seq_shapes():
    model = build_model(tiny("seq2seq")).eval()
    src, tgt = torch.randint(3, 50, (2, 7)), torch.randint(3, 50, (2, 5))
    assert model(src, tgt).shape == (2, 5, 50)


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rotary", "none"])
def test_decoder_is_causal(position):
    model = build_model(tiny("decoder_lm", position=position)).eval()
    ids = torch.randint(3, 50, (1, 10))
    changed = ids.clone()
    changed[0, 6:] = torch.randint(3, 50, (4,))
    torch.testing.assert_close(model(ids)[:, :6], model(changed)[:, :6])


@pytest.mark.parametrize("arch", ["encoder_classifier", "token_classifier", "decoder_lm"])
def test_padding_never_changes_real_positions(arch):
    model = build_model(tiny(arch, pooling="mean", position="rotary")).eval()
    ids = torch.randint(3, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    valid = padded != 0
    short, long = model(ids), model(padded, valid)
    if arch == "encoder_classifier":
        torch.testing.assert_close(short, long, atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(short, long[:, :6], atol=1e-5, rtol=0)


def test_padding_invariance_for_seq2seq_source():
    model = build_model(tiny("seq2seq")).eval()
    src, tgt = torch.randint(3, 50, (1, 6)), torch.randint(3, 50, (1, 4))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=0)


def test_mean_pooling_of_audio_ignores_padded_frames():
    config = tiny("encoder_classifier", input="audio", audio={"n_mels": 8, "patch_frames": 4}, pooling="mean")
    model = build_model(config).eval()
    mels = torch.randn(1, 8, 24)
    padded = torch.cat([mels, torch.zeros(1, 8, 16)], dim=2)
    frames = torch.zeros(1, 40, dtype=torch.bool)
    frames[:, :24] = True
    torch.testing.assert_close(model(mels), model(padded, frames), atol=1e-5, rtol=0)


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_kv_cache_generation_equals_full_recomputation(position):
    model = build_model(tiny("decoder_lm", position=position)).eval()
    prompt = torch.randint(3, 50, (2, 4))
    with_cache = model.generate(prompt, 12, use_cache=True)
    without = model.generate(prompt, 12, use_cache=False)
    assert with_cache.shape == (2, 16)
    assert torch.equal(with_cache, without)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    sampled = model.generate(prompt, 12, temperature=0.8, top_k=10, top_p=0.9, generator=g1)
    assert torch.equal(
        sampled, model.generate(prompt, 12, temperature=0.8, top_k=10, top_p=0.9, use_cache=False, generator=g2)
    )


@pytest.mark.parametrize("position", ["learned", "rotary", "sinusoidal"])
def test_cached_steps_keep_positions_when_the_first_layer_has_no_heads(position):
    """A pruned first layer stores no keys; the positions of later steps still count every token seen."""
    torch.manual_seed(0)
    config = tiny("decoder_lm", position=position, decoder={"n_layers": 2, "n_heads": [0, 4], "d_ff": 64})
    model = build_model(config).eval()
    ids = torch.randint(3, 50, (2, 8))
    cache = model.new_cache()
    model(ids[:, :5], cache=cache)
    torch.testing.assert_close(model(ids[:, 5:], cache=cache), model(ids)[:, 5:], atol=1e-5, rtol=0)


def test_generation_stops_at_eos():
    model = build_model(tiny("decoder_lm", eos_id=2)).eval()
    model.head.proj = torch.nn.Linear(32, 50)  # a head that always says eos
    with torch.no_grad():
        model.head.proj.weight.zero_()
        model.head.proj.bias.zero_()
        model.head.proj.bias[2] = 10.0
    out = model.generate(torch.randint(3, 50, (1, 3)), 20, eos_id=2)
    assert out.shape[1] == 4 and out[0, -1] == 2


def test_seq2seq_greedy_cache_equals_no_cache_and_beam_runs():
    model = build_model(tiny("seq2seq", position="sinusoidal")).eval()
    src = torch.randint(3, 50, (3, 7))
    greedy = model.generate(src, 10)
    assert greedy == model.generate(src, 10, use_cache=False)
    beam1 = model.generate(src, 10, beam=1)
    assert beam1 == greedy
    beamed = model.generate(src, 10, beam=4)
    assert len(beamed) == 3 and all(len(h) <= 10 for h in beamed)


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model = build_model(tiny("seq2seq", vocab_size=12)).eval()
    src = torch.randint(3, 12, (4, 5))

    def logprob(hyp, i):
        tgt = torch.tensor([[1] + hyp + [2]])
        logp = model(src[i : i + 1], tgt[:, :-1]).log_softmax(-1)
        return logp[0, torch.arange(len(hyp) + 1), tgt[0, 1:]].sum().item()

    greedy, beamed = model.generate(src, 8), model.generate(src, 8, beam=5, length_penalty=0.0)
    for i in range(4):
        if len(greedy[i]) < 8 and len(beamed[i]) < 8:  # both finished with eos
            assert logprob(beamed[i], i) >= logprob(greedy[i], i) - 1e-4


def test_heterogeneous_layers_including_zero_heads_and_zero_width():
    config = tiny("encoder_classifier", encoder={"n_layers": 3, "n_heads": [4, 0, 2], "d_ff": [64, 16, 0]})
    model = build_model(config).eval()
    heads = [layer.attn.n_heads for layer in model.layers]
    widths = [layer.ffn.d_ff for layer in model.layers]
    assert heads == [4, 0, 2] and widths == [64, 16, 0]
    x = torch.randint(3, 50, (2, 5))
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.sum().backward()  # a zero-sized layer does not break training


def test_zero_head_layer_passes_the_residual_through():
    config = tiny("encoder_classifier", encoder={"n_layers": 1, "n_heads": 0, "d_ff": 0})
    model = build_model(config).eval()
    block = model.layers[0]
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(block(x), x)


def test_gate_zero_equals_model_without_the_head():
    full = build_model(tiny("encoder_classifier", encoder={"n_layers": 2, "n_heads": 4, "d_ff": 64})).eval()
    small = build_model(tiny("encoder_classifier", encoder={"n_layers": 2, "n_heads": [4, 3], "d_ff": 64})).eval()
    state = full.state_dict()
    keep = torch.cat([torch.arange(h * 8, (h + 1) * 8) for h in (0, 2, 3)])
    for proj in ("q_proj", "k_proj", "v_proj"):
        state[f"layers.1.attn.{proj}.weight"] = state[f"layers.1.attn.{proj}.weight"][keep]
        state[f"layers.1.attn.{proj}.bias"] = state[f"layers.1.attn.{proj}.bias"][keep]
    state["layers.1.attn.out_proj.weight"] = state["layers.1.attn.out_proj.weight"][:, keep]
    state["layers.1.attn.head_gate"] = torch.ones(3)
    small.load_state_dict(state)
    full.layers[1].attn.head_gate[1] = 0
    x = torch.randint(3, 50, (2, 6))
    torch.testing.assert_close(full(x), small(x), atol=1e-5, rtol=0)
