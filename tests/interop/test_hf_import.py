"""Imported models compute what transformers computes: every family, every supported head."""

import pytest
import torch

from sora.errors import SoraError
from sora.interop import import_hf
from tests.interop.hf_models import text_batch

TOL = 1e-4

TEXT_CASES = [
    ("BertModel", "bert", "encoder"),
    ("BertForSequenceClassification", "bert", "encoder_classifier"),
    ("BertForTokenClassification", "bert", "token_classifier"),
    ("BertForMaskedLM", "bert", "encoder"),
    ("RobertaModel", "roberta", "encoder"),
    ("RobertaForSequenceClassification", "roberta", "encoder_classifier"),
    ("DistilBertModel", "distilbert", "encoder"),
    ("DistilBertForSequenceClassification", "distilbert", "encoder_classifier"),
    ("DistilBertForTokenClassification", "distilbert", "token_classifier"),
]


def max_diff(a, b, valid=None):
    d = (a - b).abs()
    return float((d[valid] if valid is not None else d).max())


@pytest.mark.parametrize("cls_name,model_type,arch", TEXT_CASES)
def test_text_encoders_match_transformers_at_real_positions(hf_folder, cls_name, model_type, arch):
    import transformers

    folder, hf_model = hf_folder(cls_name, model_type)
    model = import_hf(folder).model
    assert model.config.arch == arch
    ids, valid = text_batch(pad_id=model.config.pad_id)
    with torch.no_grad():
        hidden, _ = model.run_stack(ids, valid)
        base = transformers.AutoModel.from_pretrained(folder).eval()
        theirs = base(input_ids=ids, attention_mask=valid.long()).last_hidden_state
        assert hidden.abs().max() > 0.1  # not a trivially small output
        assert max_diff(hidden, theirs, valid) < TOL
        if arch != "encoder":
            out = hf_model(input_ids=ids, attention_mask=valid.long()).logits
            ours = model(ids, valid)
            assert ours.shape == out.shape
            assert max_diff(ours, out, valid if arch == "token_classifier" else None) < TOL


def test_gpt2_logits_hidden_states_and_greedy_tokens_match(hf_folder):
    import transformers

    folder, hf_model = hf_folder("GPT2LMHeadModel", "gpt2")
    model = import_hf(folder).model
    assert model.config.arch == "decoder_lm" and model.head.proj.weight is model.embed.tokens.weight  # tied
    assert (model.config.bos_id, model.config.eos_id) == (98, 98)
    ids, valid = text_batch()
    with torch.no_grad():
        assert max_diff(model(ids), hf_model(input_ids=ids, attention_mask=valid.long()).logits, valid) < TOL
        base = transformers.AutoModel.from_pretrained(folder).eval()
        hidden, _ = model.run_stack(ids)
        assert max_diff(hidden, base(input_ids=ids).last_hidden_state, valid) < TOL
    prompts = ids[:, :3]
    ours = model.generate(prompts, 12)
    theirs = hf_model.generate(
        prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=12, do_sample=False, pad_token_id=98
    )
    for a, b in zip(ours.tolist(), theirs.tolist()):
        cut = a.index(98, 3) + 1 if 98 in a[3:] else len(a)  # both stop at EOS
        assert a[:cut] == b[:cut]
    assert len(set(ours[:, 3:].flatten().tolist())) > 1  # a real continuation, not one repeated token


def test_gpt2_untied_head_is_carried_over(hf_folder):
    folder, hf_model = hf_folder("GPT2LMHeadModel", "gpt2", tie_word_embeddings=False)
    model = import_hf(folder).model
    assert not model.config.tie_embeddings
    assert torch.equal(model.head.proj.weight, hf_model.lm_head.weight)
    ids, valid = text_batch()
    with torch.no_grad():
        assert max_diff(model(ids), hf_model(input_ids=ids).logits, valid) < TOL


@pytest.mark.parametrize(
    "cls_name,arch", [("ViTModel", "encoder"), ("ViTForImageClassification", "encoder_classifier")]
)
def test_vit_matches_transformers(hf_folder, cls_name, arch):
    import transformers

    folder, hf_model = hf_folder(cls_name, "vit")
    model = import_hf(folder).model
    assert model.config.arch == arch and model.config.input == "image" and model.config.max_len == 17
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        hidden, _ = model.run_stack(images)
        base = transformers.AutoModel.from_pretrained(folder).eval()
        assert max_diff(hidden, base(pixel_values=images).last_hidden_state) < TOL
        if arch == "encoder_classifier":
            assert max_diff(model(images), hf_model(pixel_values=images).logits) < TOL


def test_labels_and_notes_are_recorded(hf_folder):
    folder, _ = hf_folder("BertForMaskedLM", "bert")
    result = import_hf(folder)
    assert any("masked-LM head" in n and "cls.predictions" in n for n in result.notes)
    assert any("2 token types kept as embed.segment" in n for n in result.notes)
    folder, _ = hf_folder("RobertaForSequenceClassification", "roberta")
    result = import_hf(folder)
    assert result.meta["labels"] == ["neg", "neutral", "pos"]
    assert result.meta["source"]["architecture"] == "RobertaForSequenceClassification"
    assert result.model.config.max_len == 40  # 42 positions minus padding_idx + 1


def test_pytorch_model_bin_is_read_with_weights_only(hf_folder, tmp_path):
    folder, hf_model = hf_folder("BertModel", "bert")
    (folder / "model.safetensors").unlink()
    torch.save(hf_model.state_dict(), folder / "pytorch_model.bin")
    model = import_hf(folder).model
    ids, valid = text_batch()
    with torch.no_grad():
        theirs = hf_model(input_ids=ids, attention_mask=valid.long()).last_hidden_state
        assert max_diff(model(ids, valid), theirs, valid) < TOL


def test_a_pickled_object_in_pytorch_model_bin_is_refused(hf_folder):
    folder, _ = hf_folder("BertModel", "bert")
    (folder / "model.safetensors").unlink()
    torch.save({"x": object()}, folder / "pytorch_model.bin")
    with pytest.raises(SoraError, match="pytorch_model.bin: refused: unsupported GLOBAL object"):
        import_hf(folder)


def test_unsupported_architectures_fail_listing_the_supported_ones(hf_folder, tmp_path):
    folder, _ = hf_folder("BertForMultipleChoice", "bert")
    with pytest.raises(SoraError, match=r"BertForMultipleChoice is not supported; supported bert classes: BertModel"):
        import_hf(folder)
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text('{"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}')
    with pytest.raises(SoraError) as err:
        import_hf(t5)
    message = str(err.value)
    assert "'t5' (T5ForConditionalGeneration) is not supported" in message
    for name in ("BertModel", "RobertaModel", "DistilBertModel", "GPT2LMHeadModel", "ViTModel"):
        assert name in message


def test_bad_folders_get_clear_errors(hf_folder, tmp_path):
    with pytest.raises(SoraError, match="no such folder"):
        import_hf(tmp_path / "nope")
    with pytest.raises(SoraError, match="unknown packaged checkpoint hf:nope"):
        import_hf("hf:nope")
    folder, _ = hf_folder("BertModel", "bert")
    (folder / "model.safetensors").unlink()
    with pytest.raises(SoraError, match="no weights"):
        import_hf(folder)
    folder, _ = hf_folder("BertModel", "bert")
    (folder / "config.json").write_text('{"model_type": "bert",\n "hidden_size": }')
    with pytest.raises(SoraError, match=r"config.json:2: not valid JSON"):
        import_hf(folder)
