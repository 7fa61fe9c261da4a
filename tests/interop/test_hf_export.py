"""Export: transformers loads what ``export_hf`` writes with the same outputs, or the export refuses and says why."""

import json

import pytest
import torch

from sora.errors import SoraError
from sora.interop import export_hf, import_hf
from sora.models import build_model, load_model, save_model
from tests.helpers import tiny
from tests.interop.hf_models import text_batch

TOL = 1e-4
ROUND_TRIPS = [
    ("BertModel", "bert"),
    ("BertForSequenceClassification", "bert"),
    ("BertForTokenClassification", "bert"),
    ("RobertaModel", "roberta"),
    ("RobertaForSequenceClassification", "roberta"),
    ("DistilBertModel", "distilbert"),
    ("DistilBertForSequenceClassification", "distilbert"),
    ("GPT2LMHeadModel", "gpt2"),
    ("ViTModel", "vit"),
    ("ViTForImageClassification", "vit"),
]


def inputs_for(model):
    if model.config.input == "image":
        return torch.randn(2, 3, 16, 16), None
    return text_batch(pad_id=model.config.pad_id)


def hf_outputs(folder, cls_name, x, valid):
    import transformers

    kwargs = {"pixel_values": x} if valid is None else {"input_ids": x, "attention_mask": valid.long()}
    with torch.no_grad():
        hidden = transformers.AutoModel.from_pretrained(folder).eval()(**kwargs).last_hidden_state
        task = getattr(transformers, cls_name).from_pretrained(folder).eval()
        out = task(**kwargs)
    return hidden, getattr(out, "logits", None)


def close(a, b, valid=None):
    d = (a - b).abs()
    return float((d[valid] if valid is not None else d).max()) < TOL


@pytest.mark.parametrize("cls_name,model_type", ROUND_TRIPS)
def test_import_then_export_loads_in_transformers_with_the_same_outputs(hf_folder, tmp_path, cls_name, model_type):
    folder, _ = hf_folder(cls_name, model_type)
    result = import_hf(folder)
    sora_dir = save_model(result.model, tmp_path / "sora", tokenizer=result.tokenizer, meta=result.meta)
    report = export_hf(sora_dir, tmp_path / "out", verify=False, one_segment=True)  # single-segment inputs below
    assert report["architecture"] == cls_name
    model = load_model(sora_dir)
    x, valid = inputs_for(model)
    hidden, logits = hf_outputs(tmp_path / "out", cls_name, x, valid)
    with torch.no_grad():
        assert close(model.run_stack(x, valid)[0], hidden, valid)
        if model.config.arch != "encoder":
            ours = model(x, valid) if model.config.arch != "decoder_lm" else model(x)
            assert close(ours, logits, None if model.config.arch == "encoder_classifier" else valid)
    # and back again: the re-imported model is the same Sora model
    again = import_hf(tmp_path / "out").model
    for name, tensor in model.state_dict().items():
        assert torch.allclose(again.state_dict()[name], tensor, atol=1e-6), name
    if "labels" in result.meta:
        assert json.loads((tmp_path / "out" / "config.json").read_text())["id2label"] == {
            "0": "neg",
            "1": "neutral",
            "2": "pos",
        }


def test_export_verifies_with_transformers_and_reports_parity(hf_folder, tmp_path):
    folder, _ = hf_folder("GPT2LMHeadModel", "gpt2")
    result = import_hf(folder)
    sora_dir = save_model(result.model, tmp_path / "sora", meta=result.meta)
    parity = export_hf(sora_dir, tmp_path / "out", verify=True)["parity"]
    assert parity["ok"] and parity["logits"] < TOL and parity["greedy_tokens_equal"] is True


def native_bert(**overrides):
    """A Sora model built to BERT's shape (post-norm, embedding norm), never imported."""
    base = dict(norm_position="post", embed_norm=True, pooling="cls", pooler=True, activation="gelu_tanh")
    return tiny("encoder_classifier", **{**base, **overrides})


def test_native_models_export_as_bert_and_gpt2(tmp_path):
    model = build_model(native_bert()).eval()
    save_model(model, tmp_path / "bert")
    assert export_hf(tmp_path / "bert", tmp_path / "bert_hf")["architecture"] == "BertForSequenceClassification"
    ids = torch.randint(1, 50, (2, 9))
    _, logits = hf_outputs(tmp_path / "bert_hf", "BertForSequenceClassification", ids, torch.ones_like(ids).bool())
    with torch.no_grad():
        assert close(model(ids), logits)

    lm = build_model(tiny("decoder_lm", activation="relu")).eval()
    save_model(lm, tmp_path / "lm")
    report = export_hf(tmp_path / "lm", tmp_path / "lm_hf")
    assert report["architecture"] == "GPT2LMHeadModel" and report["parity"]["greedy_tokens_equal"]


def test_gated_heads_and_masked_neurons_are_folded_exactly(tmp_path):
    model = build_model(native_bert()).eval()
    with torch.no_grad():
        model.layers[0].attn.head_gate[1] = 0.0
        model.layers[1].attn.head_gate[2] = 0.5
        model.layers[1].ffn.neuron_mask[:10] = 0.0
    save_model(model, tmp_path / "gated")
    export_hf(tmp_path / "gated", tmp_path / "gated_hf", verify=False)
    ids = torch.randint(1, 50, (2, 9))
    _, logits = hf_outputs(tmp_path / "gated_hf", "BertForSequenceClassification", ids, torch.ones_like(ids).bool())
    with torch.no_grad():
        assert close(model(ids), logits)
        ungated = build_model(native_bert()).eval()
        ungated.load_state_dict(
            {k: v for k, v in model.state_dict().items() if "gate" not in k and "mask" not in k}, strict=False
        )
        assert not close(ungated(ids), logits)  # the gates did change the outputs


@pytest.mark.parametrize(
    "config,reason",
    [
        (
            native_bert(encoder={"n_layers": 2, "n_heads": [4, 2], "d_ff": 64}, head_dim=8),
            r"heads per layer differ \(\[4, 2\]\)",
        ),
        (native_bert(encoder={"n_layers": 2, "n_heads": [4, 0], "d_ff": 64}), "layer 1 has no attention heads"),
        (native_bert(position="rotary"), "learned absolute positions; this model uses rotary"),
        (native_bert(adaptive_span={"max_span": 16}), "adaptive attention span"),
        (native_bert(activation="swiglu"), "no swiglu feed-forward"),
        (native_bert(norm="rmsnorm"), "uses LayerNorm, this model rmsnorm"),
        (native_bert(encoder={"n_layers": 2, "n_heads": 4, "d_ff": [64, 32]}), "feed-forward widths differ"),
        (native_bert(pooling="mean"), "--body-only"),
        (tiny("encoder_classifier"), "BERT is post-norm; this model is pre-norm"),
        (tiny("seq2seq"), "encoder-decoder"),
    ],
)
def test_what_transformers_cannot_represent_is_refused_and_nothing_is_written(tmp_path, config, reason):
    save_model(build_model(config), tmp_path / "m")
    with pytest.raises(SoraError, match=reason) as err:
        export_hf(tmp_path / "m", tmp_path / "out", verify=False)
    assert "cannot export" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no folder, no temporary leftovers


def test_body_only_exports_a_mean_pooling_classifier_as_its_encoder(tmp_path):
    model = build_model(native_bert(pooling="mean", pooler=False)).eval()
    save_model(model, tmp_path / "m")
    report = export_hf(tmp_path / "m", tmp_path / "out", body_only=True, verify=True)
    assert report["architecture"] == "BertModel" and report["parity"]["ok"]
    assert any("head" in n and "not exported" in n for n in report["notes"])
