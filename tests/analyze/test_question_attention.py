"""Question-to-paragraph attention per head (text pairs): the masks of the two texts, and each head's share."""

from __future__ import annotations

from sora.analyze.pairs import pair_masks, question_to_context
from sora.analyze.tracing import run_with_cache
from tests.tasks.test_span import span_batch, tiny_span_model


def test_the_question_and_the_paragraph_leave_out_the_special_tokens():
    question, context = pair_masks(span_batch())
    # [CLS] q q [SEP] | c c c [SEP]   and   [CLS] q [SEP] | c c [SEP] pad pad
    assert question.tolist() == [[0, 1, 1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]]
    assert context.tolist() == [[0, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0, 0, 0]]


def test_every_head_gets_a_share_for_the_example_and_on_average():
    model, batch = tiny_span_model(), span_batch()
    pairs = question_to_context(model, [batch], "span")
    assert len(pairs["heads"]) == 2 and pairs["windows"] == 2 and pairs["example"]["question_tokens"] == 2
    assert all(0 <= v["example"] <= 1 and 0 <= v["mean"] <= 1 for v in pairs["heads"].values())
    # the share by hand for head 0 of the first window: pattern rows of the question, columns of the paragraph
    _, cache = run_with_cache(model, batch, "span", ["layers.0.attn.hook_pattern"])
    want = cache["layers.0.attn.hook_pattern"][0, 0][1:3, 4:7].sum(-1).mean()
    assert abs(pairs["heads"]["layers.0.attn.head.0"]["example"] - float(want)) < 1e-3


def test_batches_without_segments_give_nothing():
    model, batch = tiny_span_model(), span_batch()
    del batch["segments"]
    assert question_to_context(model, [batch], "span") is None
