"""Structural pruning removes rows and columns for real, and equals the gated (masked) model."""

import pytest
import torch

from sora.compress import mask_model, plan_from_names, prune_model
from sora.compress.structural import renamed
from sora.errors import SoraError
from sora.models import build_model, load_model, save_model
from tests.helpers import tiny


def _args(model, config, B=2, T=7):
    ids = torch.randint(3, 50, (B, T))
    if config.arch == "seq2seq":
        return ids, ids[:, :5]
    return (ids,)


def _trained_like(model):
    """Random non-zero biases and gates, so that a slicing bug cannot hide behind zeros."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return model.eval()


CASES = {
    "heads": (tiny(), ["layers.0.attn.head.1", "layers.0.attn.head.3", "layers.1.attn.head.0"]),
    "neurons": (tiny(), ["layers.0.ffn.neuron.0", "layers.0.ffn.neuron.17", "layers.1.ffn.neuron.63"]),
    "swiglu": (tiny(activation="swiglu"), ["layers.1.ffn.neuron.5", "layers.1.ffn.neuron.6", "layers.0.attn.head.2"]),
    "post-norm": (tiny(norm_position="post"), ["layers.1.attn.head.2", "layers.0.ffn.neuron.3"]),
    "rotary-lm": (tiny("decoder_lm", position="rotary"), ["layers.0.attn.head.0", "layers.1.ffn.neuron.9"]),
    "adaptive-span": (tiny(adaptive_span={"max_span": 16, "init": 0.7}), ["layers.0.attn.head.1"]),
    "cross-heads": (
        tiny("seq2seq"),
        [
            "decoder.layers.0.cross_attn.head.1",
            "decoder.layers.1.cross_attn.head.0",
            "encoder.layers.1.attn.head.3",
            "decoder.layers.0.ffn.neuron.4",
        ],
    ),
    "layers": (tiny(encoder={"n_layers": 3, "n_heads": 4, "d_ff": 64}), ["layers.1"]),
    "seq2seq-layers": (tiny("seq2seq"), ["encoder.layers.0", "decoder.layers.1"]),
    "whole-attention": (tiny(), ["layers.1.attn"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pruned_outputs_equal_the_masked_model(case):
    config, names = CASES[case]
    model = _trained_like(build_model(config))
    plan = plan_from_names(model, names)
    pruned, masked = prune_model(model, plan), mask_model(model, plan)
    args = _args(model, config)
    torch.testing.assert_close(pruned(*args), masked(*args), atol=1e-5, rtol=0)
    assert not torch.allclose(pruned(*args), model(*args), atol=1e-4)  # the plan changed something
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_matrices_really_shrink_and_config_records_each_layer():
    model = _trained_like(build_model(tiny(activation="swiglu")))
    plan = plan_from_names(model, ["layers.0.attn.head.1", "layers.0.attn.head.2", "layers.1.ffn.neuron.0"])
    pruned = prune_model(model, plan)
    attn, ffn = pruned.layers[0].attn, pruned.layers[1].ffn
    assert attn.q_proj.weight.shape == (2 * 8, 32) and attn.out_proj.weight.shape == (32, 2 * 8)
    assert attn.head_gate.shape == (2,)
    assert ffn.fc_in.weight.shape == (63, 32) and ffn.fc_gate.weight.shape == (63, 32)
    assert ffn.fc_out.weight.shape == (32, 63) and ffn.neuron_mask.shape == (63,)
    assert pruned.config.encoder.n_heads == [2, 4] and pruned.config.encoder.d_ff == [64, 63]
    # surviving head 1 of layer 0 was head 3: its query rows moved, unchanged
    torch.testing.assert_close(attn.q_proj.weight[8:16], model.layers[0].attn.q_proj.weight[24:32])


def test_pruned_folder_reloads_alone(tmp_path):
    model = _trained_like(build_model(tiny("seq2seq")))
    plan = plan_from_names(
        model,
        [
            "encoder.layers.1",
            "decoder.layers.0.cross_attn.head.0",
            "decoder.layers.1.attn.head.2",
            "encoder.layers.0.ffn.neuron.1",
        ],
    )
    pruned = prune_model(model, plan)
    save_model(pruned, tmp_path / "p")
    loaded = load_model(tmp_path / "p")
    args = _args(model, model.config)
    assert torch.equal(loaded(*args), pruned(*args))
    assert loaded.config.encoder.n_layers == 1 and loaded.config.decoder.cross_heads == [1, 2]


def test_a_layer_pruned_to_zero_heads_and_zero_neurons_works(tmp_path):
    model = _trained_like(build_model(tiny()))
    plan = plan_from_names(model, [f"layers.0.attn.head.{h}" for h in range(4)] + ["layers.1.ffn"])
    pruned = prune_model(model, plan)
    assert pruned.layers[0].attn.n_heads == 0 and pruned.layers[0].attn.q_proj.weight.numel() == 0
    assert pruned.layers[1].ffn.d_ff == 0
    args = _args(model, model.config)
    torch.testing.assert_close(pruned(*args), mask_model(model, plan)(*args), atol=1e-5, rtol=0)
    save_model(pruned, tmp_path / "p")
    assert load_model(tmp_path / "p").config.encoder.n_heads == [0, 4]
    logits = pruned(*args)
    assert torch.isfinite(logits).all()
    logits.sum().backward()  # and it still trains


def test_pruning_twice_uses_the_new_numbering():
    model = _trained_like(build_model(tiny(encoder={"n_layers": 3, "n_heads": 4, "d_ff": 64})))
    once = prune_model(model, plan_from_names(model, ["layers.0"]))
    twice = prune_model(once, plan_from_names(once, ["layers.1.attn.head.0"]))  # the original layers.2
    assert twice.config.encoder.n_layers == 2 and twice.config.encoder.n_heads == [4, 3]
    torch.testing.assert_close(twice.layers[1].attn.k_proj.weight, model.layers[2].attn.k_proj.weight[8:])


@pytest.mark.parametrize(
    "name, message",
    [
        ("layers.7.attn.head.0", "no module at 'layers.7.attn'"),
        ("layers.0.attn.head.9", "has 4 heads"),
        ("layers.0.ffn.neuron.64", "has 64 neurons"),
        ("embed.tokens", "cannot prune 'embed.tokens'"),
        ("layers.0.attn_norm", "cannot prune"),
    ],
)
def test_bad_names_fail_clearly(name, message):
    model = build_model(tiny())
    with pytest.raises(SoraError, match=message) as err:
        plan_from_names(model, [name], where="plan.yaml")
    assert "plan.yaml" in str(err.value)


def test_quantized_or_adapted_models_are_refused():
    from sora.compress import LoRAConfig, QuantizeConfig, add_lora, quantize_model

    model = build_model(tiny())
    q = quantize_model(model, QuantizeConfig(min_weights=0, min_side=0))
    with pytest.raises(SoraError, match="quantized"):
        prune_model(q, plan_from_names(model, ["layers.0.attn.head.0"]))
    add_lora(model, LoRAConfig(rank=2))
    with pytest.raises(SoraError, match="LoRA"):
        prune_model(model, plan_from_names(model, ["layers.0.attn.head.0"]))


def test_renamed_follows_units_and_blocks_to_their_new_names():
    model = build_model(tiny(encoder={"n_layers": 3, "n_heads": 4, "d_ff": 64}))
    plan = plan_from_names(model, ["layers.0", "layers.1.attn.head.1", "layers.2.ffn.neuron.0"])
    names = renamed(model, plan)
    assert names["layers.1.attn.head.2"] == "layers.0.attn.head.1" and names["layers.2"] == "layers.1"
    assert names["layers.2.ffn.neuron.5"] == "layers.1.ffn.neuron.4"
    assert "layers.1.attn.head.1" not in names and "layers.0.attn.head.0" not in names
    pruned = prune_model(model, plan)
    torch.testing.assert_close(pruned.layers[0].attn.q_proj.weight[8:16], model.layers[1].attn.q_proj.weight[16:24])
