"""Answer a question about a paragraph with a span model: what ``sora generate --question --context`` prints.

The paragraph is cut into the windows training used (the model folder's ``data.max_len`` and ``data.stride``,
from its provenance), every window is read with the question, and the best valid span over all of them is
the answer, returned with its characters in the paragraph.
"""

from __future__ import annotations

import torch
from torch import nn

from sora.data.spans import Question, SpanExamples
from sora.data.windows import windows
from sora.errors import SoraError
from sora.tasks.spans import Answer, answers

DEFAULT_STRIDE = 64


@torch.inference_mode()
def answer_question(
    model: nn.Module,
    tokenizer,
    question: str,
    context: str,
    *,
    max_len: int | None = None,
    stride: int | None = None,
    max_answer: int = 30,
) -> Answer:
    if model.config.arch != "span_extractor":
        raise SoraError(f"answering a question needs a span_extractor model (this one is {model.config.arch})")
    if tokenizer is None:
        raise SoraError("answering a question needs the model folder's tokenizer.json")
    if not question.strip() or not context.strip():
        raise SoraError("give both a question (--question) and a paragraph (--context)")
    max_len = min(max_len or model.config.max_len, model.config.max_len)
    stride = DEFAULT_STRIDE if stride is None else stride
    cut = windows(tokenizer, question, context, max_len, min(stride, max_len // 2))
    batch = SpanExamples([Question(question, context, [], cut)]).batch([0])
    model.eval()
    logits = model(batch["inputs"], batch["valid"], batch["segments"])  # (W, T, 2)
    logits = logits.masked_fill(~batch["valid"][..., None], -1e4)
    (found,) = answers(logits, batch["offsets"], batch["window_of"], [context], max_answer)
    return found


def window_settings(meta: dict) -> tuple[int | None, int | None]:
    """(max_len, stride) the model was trained with, from its meta.json provenance (None where unknown)."""
    data = (meta.get("provenance") or {}).get("data_config") or {}
    return data.get("max_len"), data.get("stride")
