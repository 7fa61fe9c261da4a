"""A question as a span model reads it: the paragraph cut into the windows training used.

Training cut each paragraph into windows of ``data.max_len`` tokens sharing ``data.stride`` tokens (the model
folder's provenance records both); a new question is cut the same way, so that the model sees what it learnt
on. Every window is read with the question; the best valid span over all of them is the answer
(``sora.tasks.spans.answers``), which the Predictor returns with its characters in the paragraph.
"""

from __future__ import annotations

from sora.data.spans import Question
from sora.data.windows import windows
from sora.errors import SoraError

DEFAULT_STRIDE = 64  # context tokens consecutive windows share, when the folder does not say


def window_settings(meta: dict, model_max_len: int) -> tuple[int, int]:
    """(max_len, stride) the model was trained with, from its meta.json provenance; where unknown, the model's
    own ``max_len`` and ``DEFAULT_STRIDE``. The stride is at most half a window (each window then moves on)."""
    data = (meta.get("provenance") or {}).get("data_config") or {}
    max_len = min(data.get("max_len") or model_max_len, model_max_len)
    stride = data.get("stride")
    stride = DEFAULT_STRIDE if stride is None else stride
    return max_len, min(stride, max_len // 2)


def read_question(raw, tokenizer, max_len: int, stride: int) -> Question:
    """``{"question": str, "context": str}`` -> the question with its windows; one line naming what is wrong."""
    if not isinstance(raw, dict):
        raise SoraError(f'expected {{"question": ..., "context": ...}}, got {type(raw).__name__}')
    texts = []
    for field in ("question", "context"):
        value = raw.get(field)
        if value is None:
            raise SoraError(f"no {field!r} field")
        if not isinstance(value, str):
            raise SoraError(f"{field!r} holds {type(value).__name__}, not a text")
        if not value.strip():
            raise SoraError(f"empty {field}")
        texts.append(value)
    question, context = texts
    return Question(question, context, [], windows(tokenizer, question, context, max_len, stride))
