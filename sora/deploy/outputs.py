"""What a batch of model outputs means, one JSON-able dict per input (the Predictor's results).

classification: {"label", "score", "scores"}; token classification: {"tokens", "labels"}; CTC:
{"transcript"} (greedy best path, sora.tasks); question answering: {"answer", "start", "end", "score"} (the
best valid span over a question's windows, its characters in the context, and its start + end logit);
generation's results are text and come from the predictor.
"""

from __future__ import annotations

from torch import Tensor

from sora.errors import SoraError
from sora.tasks import CTC, greedy_ctc
from sora.tasks.question_answering import masked_padding
from sora.tasks.spans import answers


def label_names(labels: list[str] | None, n: int) -> list[str]:
    """The class names, or their numbers when the folder names none."""
    return list(labels) if labels else [str(i) for i in range(n)]


def classified(logits: Tensor, labels: list[str] | None) -> list[dict]:
    """(B, C) logits -> the top label, its probability, and every label's."""
    probs = logits.float().softmax(-1)  # (B, C)
    names = label_names(labels, probs.shape[-1])
    out = []
    for row in probs.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        out.append({"label": names[best], "score": row[best], "scores": dict(zip(names, row))})
    return out


def tagged(logits: Tensor, valid: Tensor | None, tokens: list[list[str]], labels: list[str] | None) -> list[dict]:
    """(B, T, C) logits -> a label for each real token."""
    best = logits.argmax(-1)  # (B, T)
    names = label_names(labels, logits.shape[-1])
    lengths = valid.sum(1).tolist() if valid is not None else [best.shape[1]] * best.shape[0]
    out = []
    for row, n, words in zip(best.tolist(), lengths, tokens):
        n = min(int(n), len(words))
        out.append({"tokens": words[:n], "labels": [names[i] for i in row[:n]]})
    return out


def transcribed(logits: Tensor, valid: Tensor | None, labels: list[str] | None) -> list[dict]:
    """(B, T', C) per-patch logits -> the greedy CTC transcript (class 0 is the blank)."""
    lengths = valid.sum(1) if valid is not None else logits.new_full((logits.shape[0],), logits.shape[1]).long()
    text = CTC(labels).text
    return [{"transcript": text(ids)} for ids in greedy_ctc(logits, lengths)]


def answered(logits: Tensor, feeds: dict[str, Tensor], contexts: list[str]) -> list[dict]:
    """(W, T, 2) start and end logits of every window -> each question's best answer (``feeds``: the batch's
    ``valid``, ``offsets`` and ``window_of``, sora.deploy.inputs.question_feeds). Padding is masked as the
    span task masks it."""
    logits = masked_padding(logits.float(), feeds["valid"])  # (W, T, 2)
    out = []
    for found in answers(logits, feeds["offsets"], feeds["window_of"], contexts):
        if found.score == float("-inf"):
            raise SoraError("the context has no span the model can point at")
        out.append({"answer": found.text, "start": found.start, "end": found.end, "score": found.score})
    return out
