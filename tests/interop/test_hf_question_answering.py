"""BERT for question answering through import and export: qa_outputs is the span head, token types the segment
embedding, and start/end logits agree with transformers on question-paragraph pairs."""

from __future__ import annotations

import torch

from sora.interop import export_hf, import_hf
from sora.interop.verify import TOLERANCE
from sora.models import save_model
from tests.interop.hf_models import text_batch, transformers


def pair_inputs():
    ids, valid = text_batch()
    types = (torch.arange(ids.shape[1]) >= 4).long().expand_as(ids) * valid
    return ids, valid, types


def test_bert_for_question_answering_imports_and_exports_unchanged_on_pairs(hf_folder, tmp_path):
    folder, original = hf_folder("BertForQuestionAnswering", "bert")
    result = import_hf(folder)
    assert result.model.config.arch == "span_extractor" and result.model.config.segments == 2
    ids, valid, types = pair_inputs()
    with torch.no_grad():
        ours = result.model.eval()(ids, valid, types)  # (B, T, 2)
        theirs = original(input_ids=ids, attention_mask=valid.long(), token_type_ids=types)
    assert float((ours[..., 0] - theirs.start_logits).abs()[valid].max()) < TOLERANCE
    assert float((ours[..., 1] - theirs.end_logits).abs()[valid].max()) < TOLERANCE
    sora_dir = save_model(result.model, tmp_path / "sora", tokenizer=result.tokenizer, meta=result.meta)
    report = export_hf(sora_dir, tmp_path / "out", verify=True)
    assert report["architecture"] == "BertForQuestionAnswering" and report["parity"]["ok"]
    assert report["parity"]["second_segment_logits"] <= TOLERANCE
    exported = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        again = exported(input_ids=ids, attention_mask=valid.long(), token_type_ids=types)
    assert float((again.end_logits - theirs.end_logits).abs()[valid].max()) < TOLERANCE
