"""int8 dynamic quantization: close to fp32, saved as safetensors + metadata, reloads from its folder."""

import json

import pytest
import torch
from safetensors import safe_open

from sora.compress import QuantizeConfig, quantize_model, save_quantized
from sora.compress.measure import count_weights
from sora.errors import SoraError
from sora.models import build_model, load_model, save_model
from sora.particles import int8
from sora.particles.int8 import Int8Embedding, Int8Linear, quantize_rows
from tests.helpers import tiny

ALL = QuantizeConfig(min_weights=0, min_side=0)  # tiny test models: quantize every Linear


@torch.no_grad()
def _rel_error(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    "config",
    [tiny(), tiny(activation="swiglu", norm_position="post"), tiny("decoder_lm", position="rotary"), tiny("seq2seq")],
    ids=["encoder", "swiglu-post", "decoder", "seq2seq"],
)
def test_int8_outputs_stay_close_and_the_folder_reloads(tmp_path, config):
    model = build_model(config).eval()
    q = quantize_model(model, ALL)
    ids = torch.randint(3, 50, (4, 9))
    args = (ids, ids[:, :6]) if config.arch == "seq2seq" else (ids,)
    assert _rel_error(q(*args), model(*args)) < 0.05
    left = [n for n, m in q.named_modules() if isinstance(m, torch.nn.Linear) and m.weight.numel()]
    assert left == [] and any(isinstance(m, Int8Linear) for m in q.modules())
    save_quantized(q, tmp_path / "q")
    loaded = load_model(tmp_path / "q")  # plain load_model: the config says how the weights are stored
    assert torch.equal(loaded(*args), q(*args))
    assert loaded.config.quantization["method"] == "int8_dynamic"
    assert not model.config.quantization  # the fp32 model is untouched


def test_weights_are_int8_on_disk_with_a_scale_per_row(tmp_path):
    model = build_model(tiny(vocab_size=400, d_model=64)).eval()
    save_model(model, tmp_path / "fp32")
    save_quantized(quantize_model(model, ALL), tmp_path / "q")
    with safe_open(str(tmp_path / "q" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("embed.tokens.weight").dtype == torch.int8
        assert f.get_tensor("embed.tokens.scale").shape == (400,)
        assert f.get_tensor("layers.0.attn.q_proj.weight").dtype == torch.int8
        assert f.get_tensor("layers.0.attn.q_proj.scale").shape == (64,)
        assert f.get_tensor("layers.0.attn_norm.weight").dtype == torch.float32
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    assert size("fp32") / size("q") > 3.0
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert "layers.1.ffn.fc_out" in config["quantization"]["linear"]


def test_tied_lm_head_is_stored_once_and_stays_tied(tmp_path):
    model = build_model(tiny("decoder_lm", vocab_size=500, d_model=64)).eval()
    q = quantize_model(model, ALL)
    assert q.config.quantization["tied"] == {"head.proj": "embed.tokens"}
    assert q.head.proj.weight is q.embed.tokens.weight
    save_quantized(q, tmp_path / "q")
    with safe_open(str(tmp_path / "q" / "model.safetensors"), "pt") as f:
        assert "head.proj.weight" not in f.keys()
    loaded = load_model(tmp_path / "q")
    assert loaded.head.proj.weight.data_ptr() == loaded.embed.tokens.weight.data_ptr()
    ids = torch.randint(3, 500, (1, 5))
    assert torch.equal(loaded.generate(ids, 6), q.generate(ids, 6))


def test_small_linears_are_int8_on_disk_but_compute_in_fp32(tmp_path):
    model = build_model(tiny()).eval()  # d=32: every Linear is far below the default threshold
    q = quantize_model(model)
    info = q.config.quantization
    assert info["linear"] == [] and "layers.0.attn.q_proj" in info["linear_fp32_compute"]
    layer = q.layers[0].attn.q_proj
    assert isinstance(layer, Int8Linear) and layer.compute == "fp32" and layer.weight.dtype == torch.int8
    ids = torch.randint(3, 50, (2, 7))
    with torch.no_grad():  # fp32 maths on the dequantized weights: only the weight rounding differs
        assert _rel_error(q(ids), model(ids)) < 0.02
    save_quantized(q, tmp_path / "q")
    assert torch.equal(load_model(tmp_path / "q")(ids), q(ids))
    assert count_weights(q) == count_weights(model)
    kept = quantize_model(model, QuantizeConfig(small_linears="fp32"))
    assert kept.config.quantization["linear_fp32_compute"] == [] and isinstance(
        kept.layers[0].attn.q_proj, torch.nn.Linear
    )
    assert isinstance(q.embed.tokens, Int8Embedding) and isinstance(kept.embed.tokens, Int8Embedding)


def test_quantize_rows_round_trips_within_half_a_step():
    w = torch.randn(16, 40)
    w[3] = 0  # an all-zero row must not divide by zero
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    err = (q.float() * scale[:, None] - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-7).all()


def test_quantized_models_copy_and_refuse_to_quantize_again():
    import copy

    q = quantize_model(build_model(tiny()).eval(), ALL)
    ids = torch.randint(3, 50, (2, 5))
    q(ids)  # packs the int8 weights
    assert torch.equal(copy.deepcopy(q)(ids), q(ids))
    with pytest.raises(SoraError, match="already quantized"):
        quantize_model(q)


def test_a_damaged_quantized_folder_fails_clearly(tmp_path):
    save_quantized(quantize_model(build_model(tiny()).eval(), ALL), tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    config["quantization"]["linear"].append("layers.0.attn_norm")
    (tmp_path / "q" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SoraError, match="'layers.0.attn_norm' is not a Linear"):
        load_model(tmp_path / "q")
    config["quantization"]["linear"].remove("layers.0.attn_norm")
    config["quantization"]["linear"].remove("layers.0.attn.q_proj")
    (tmp_path / "q" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SoraError, match="does not match config.json"):
        load_model(tmp_path / "q")


@pytest.mark.parametrize("sensitive_as", ["fp32", "row"])
def test_the_linear_int8_hurts_most_is_found_and_given_fp32_maths_or_row_scales(tmp_path, sensitive_as):
    from sora.compress.sensitivity import linear_sensitivity, quantize_calibrated
    from sora.tasks import task_for
    from tests.compress.toy_data import ToyClassification

    torch.manual_seed(0)
    data = ToyClassification()
    model = build_model(tiny()).eval()
    with torch.no_grad():  # one neuron with outsized activations: per-tensor int8 loses the others' detail
        model.layers[1].ffn.fc_in.weight[0].mul_(60)
        model.layers[1].ffn.fc_out.weight[:, 0].div_(60)
    task = task_for(data, model)
    batches = list(data.loader("validation", 16))
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.weight.numel() > 100]
    scores = linear_sensitivity(model, batches, task.forward, names)
    assert max(scores, key=scores.get) == "layers.1.ffn.fc_out"
    assert all(isinstance(model.get_submodule(n), torch.nn.Linear) for n in names)  # restored
    config = QuantizeConfig(min_weights=0, min_side=0, sensitive=1, sensitive_as=sensitive_as)
    q = quantize_calibrated(model, data, task, config, log=lambda _: None)
    listed = "linear_fp32_compute" if sensitive_as == "fp32" else "linear_row_scaled"
    assert q.config.quantization[listed] == ["layers.1.ffn.fc_out"]
    plain = quantize_model(model, ALL)
    ids = batches[0]["inputs"]
    with torch.no_grad():
        assert _rel_error(q(ids), model(ids)) < _rel_error(plain(ids), model(ids))
    save_quantized(q, tmp_path / "q")
    loaded = load_model(tmp_path / "q")
    assert loaded.layers[1].ffn.fc_out.compute == ("fp32" if sensitive_as == "fp32" else "int8_row")
    assert loaded.layers[1].ffn.fc_in.compute == "int8"
    assert torch.equal(loaded(ids), q(ids))
    with pytest.raises(SoraError, match="not a Linear"):
        quantize_model(
            model, ALL, **{"fp32_compute" if sensitive_as == "fp32" else "row_scaled": ["layers.9.ffn.fc_out"]}
        )


def test_row_scales_keep_one_outlier_token_from_coarsening_the_others():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48).eval()
    x = torch.randn(2, 7, 64)  # (B, T, d)
    x[1, 3] *= 200  # one token far larger than the rest, in another sentence
    per_call, per_row = Int8Linear.from_linear(linear), Int8Linear.from_linear(linear, compute="int8_row")
    with torch.no_grad():
        exact = linear(x)
        call_error, row_error = _rel_error(per_call(x)[0], exact[0]), _rel_error(per_row(x)[0], exact[0])
        assert row_error < 0.04 < call_error  # per call, the outlier sets the step for every token
        assert row_error < call_error / 5
        assert _rel_error(per_row(x)[1, 3], exact[1, 3]) < 0.04  # and the outlier itself is fine
        alone = per_row(x[:1])  # the first sentence alone rounds almost as it did in the batch
        assert _rel_error(alone, per_row(x)[:1]) < 0.02
        assert torch.equal(per_row(torch.zeros(1, 2, 64)), linear.bias.expand(1, 2, 48))  # zero rows: the bias


def test_row_scaled_activations_for_every_linear_reload(tmp_path):
    model = build_model(tiny(d_model=64)).eval()
    q = quantize_model(model, QuantizeConfig(min_weights=0, min_side=0, activations="row"))
    info = q.config.quantization
    assert info["linear_row_scaled"] == info["linear"] and info["linear"]
    with torch.no_grad():
        ids = torch.randint(3, 50, (4, 9))
        assert _rel_error(q(ids), model(ids)) < 0.05
        save_quantized(q, tmp_path / "q")
        loaded = load_model(tmp_path / "q")
        assert {m.compute for m in loaded.modules() if isinstance(m, Int8Linear)} == {"int8_row"}
        assert torch.equal(loaded(ids), q(ids))
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    config["quantization"]["linear_row_scaled"].append("layers.0.attn_norm")
    (tmp_path / "q" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SoraError, match="linear_row_scaled: layers.0.attn_norm is not in its 'linear' list"):
        load_model(tmp_path / "q")


def test_gates_still_switch_particles_off_in_an_int8_model():
    model = build_model(tiny()).eval()
    q = quantize_model(model, ALL)
    ids = torch.randint(3, 50, (2, 7))
    with torch.no_grad():
        before = q(ids)
        q.layers[0].attn.head_gate[1] = 0.0
        q.layers[1].ffn.neuron_mask[:8] = 0.0
        model.layers[0].attn.head_gate[1] = 0.0
        model.layers[1].ffn.neuron_mask[:8] = 0.0
        assert not torch.allclose(q(ids), before)
        assert _rel_error(q(ids), model(ids)) < 0.05  # gated the same way as the fp32 model


@pytest.mark.parametrize("activations, atol", [("tensor", 1e-6), ("row", 1e-5)])
def test_q_k_v_in_int8_run_as_one_gemm_with_the_separate_calls_outputs(activations, atol):
    model = build_model(tiny(d_model=64)).eval()
    q = quantize_model(model, QuantizeConfig(min_weights=0, min_side=0, activations=activations))
    attn = q.layers[0].attn
    x = torch.randn(2, 7, 64)
    with torch.no_grad():
        together = type(attn.q_proj).project_together((attn.q_proj, attn.k_proj, attn.v_proj), x)
        for fused, alone in zip(together, (attn.q_proj(x), attn.k_proj(x), attn.v_proj(x))):
            torch.testing.assert_close(fused, alone, atol=atol, rtol=0)
        attn.v_proj.weight[0, 0] = 7  # a changed weight repacks the stacked matrix
        assert torch.equal(
            type(attn.q_proj).project_together((attn.q_proj, attn.k_proj, attn.v_proj), x)[2], attn.v_proj(x)
        )


def test_q_k_v_count_together_for_the_int8_threshold():
    model = build_model(tiny(d_model=64)).eval()  # q, k, v: 64 x 64 = 4,096 weights each
    q = quantize_model(model, QuantizeConfig(min_weights=10_000, min_side=0))
    linear = q.config.quantization["linear"]
    assert {"layers.0.attn.q_proj", "layers.0.attn.k_proj", "layers.0.attn.v_proj"} <= set(linear)  # 12,288 stacked
    assert "layers.0.attn.out_proj" not in linear  # 4,096 alone
    narrow = quantize_model(model, QuantizeConfig(min_weights=10_000, min_side=100))  # every side is 64
    assert narrow.config.quantization["linear"] == []


@pytest.mark.skipif("onednn" not in torch.backends.quantized.supported_engines, reason="no oneDNN quantized engine")
@pytest.mark.parametrize("compute", ["int8", "int8_row"])
@pytest.mark.parametrize("reduce_range", [True, False])  # 7-bit activations (no VNNI) or 8
def test_many_rows_may_run_on_onednn_with_the_same_outputs_as_fbgemm(monkeypatch, compute, reduce_range):
    monkeypatch.setattr(int8, "REDUCE_RANGE", reduce_range)
    torch.manual_seed(0)
    linear = Int8Linear.from_linear(torch.nn.Linear(64, 48), compute=compute)
    x = torch.randn(4, 9, 64)  # 36 rows
    with torch.no_grad():
        monkeypatch.setattr(int8, "ONEDNN_FROM_ROWS", None)
        default = linear(x)
        monkeypatch.setattr(int8, "ONEDNN_FROM_ROWS", 36)
        onednn = linear(x)
        assert set(linear._packed[1]) == {"default", "onednn"}  # both packed, each kept for its row counts
        linear._packed = None
        linear(x[:1])  # 9 rows: the default kernel only
        assert set(linear._packed[1]) == {"default"}
    assert torch.backends.quantized.engine != "onednn"  # packing for oneDNN left the global engine alone
    torch.testing.assert_close(onednn, default, atol=1e-5, rtol=0)  # same rounding, another GEMM


@pytest.mark.parametrize("compute", ["int8", "int8_row"])
def test_one_or_two_rows_run_fp32_maths_unless_the_matrix_is_large(monkeypatch, compute):
    torch.manual_seed(0)
    linear = Int8Linear.from_linear(torch.nn.Linear(64, 48), compute=compute)
    with torch.no_grad():
        for x in (torch.randn(1, 1, 64), torch.randn(2, 1, 64)):  # one token, or two sentences of one
            assert torch.equal(linear(x), torch.nn.functional.linear(x, linear.dequantized(), linear.bias))
        three = torch.randn(1, 3, 64)
        assert not torch.equal(linear(three), torch.nn.functional.linear(three, linear.dequantized(), linear.bias))
        monkeypatch.setattr(int8, "FP32_UNDER_WEIGHTS", 64 * 48)  # a "large" matrix: int8 even for one row
        assert linear.kernel_for(1) != "fp32"
        assert not torch.equal(linear(x), torch.nn.functional.linear(x, linear.dequantized(), linear.bias))


def test_eight_bit_activations_round_finer_than_seven(monkeypatch):
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 128).eval()
    q = Int8Linear.from_linear(linear)
    x = torch.randn(4, 16, 256)
    x[0, 0, 0] = 12  # one large activation sets the per-call step
    errors = {}
    with torch.no_grad():
        for reduce_range in (True, False):  # without VNNI, with it
            monkeypatch.setattr(int8, "REDUCE_RANGE", reduce_range)
            errors[reduce_range] = _rel_error(q(x), linear(x))
    assert errors[False] < 0.7 * errors[True]
