"""The best answer span: from start and end logits per token to characters of the paragraph.

A span is valid when it lies inside the paragraph's tokens (not the question, the separators or the
padding), ends at or after its start, and is at most ``max_answer`` tokens long; its score is its start
logit plus its end logit. A question read in several windows (sora.data.windows) takes the best span of
all its windows, and the characters its tokens came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MAX_ANSWER = 30  # tokens: the longest answer span decoded (training's metrics, predictions)


@dataclass
class Answer:
    text: str
    start: int  # first character in the paragraph
    end: int  # end character (exclusive)
    score: float  # start logit + end logit


def best_spans(logits: Tensor, allowed: Tensor, max_answer: int = MAX_ANSWER) -> tuple[Tensor, Tensor, Tensor]:
    """Each window's best valid span: (score (W,), first token (W,), last token (W,)); -inf where none is valid.

    ``logits`` (W, T, 2) start and end logits; ``allowed`` (W, T) True at the paragraph's tokens.
    """
    start, end = logits[..., 0].float(), logits[..., 1].float()  # (W, T)
    W, T = start.shape
    scores = start[:, :, None] + end[:, None, :]  # (W, T, T): span (i, j)
    i = torch.arange(T, device=logits.device)
    band = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max_answer)  # (T, T): i <= j < i + max_answer
    ok = band[None] & allowed[:, :, None] & allowed[:, None, :]  # (W, T, T)
    best, flat = scores.masked_fill(~ok, float("-inf")).flatten(1).max(1)  # (W,)
    return best, flat // T, flat % T


def answers(
    logits: Tensor, offsets: Tensor, window_of: Tensor, contexts: list[str], max_answer: int = MAX_ANSWER
) -> list[Answer]:
    """The best answer of each question, over its windows.

    ``offsets`` (W, T, 2) characters of each paragraph token (-1 elsewhere); ``window_of`` (W,) the question
    of each window (an index into ``contexts``).
    """
    score, first, last = best_spans(logits, offsets[..., 0] >= 0, max_answer)
    out = [Answer("", 0, 0, float("-inf")) for _ in contexts]
    for w, q in enumerate(window_of.tolist()):
        s = float(score[w])
        if s > out[q].score:
            c0, c1 = int(offsets[w, first[w], 0]), int(offsets[w, last[w], 1])
            out[q] = Answer(contexts[q][c0:c1], c0, c1, s)
    return out
