"""Windows over long contexts: a question with a paragraph longer than the model reads.

The paragraph is cut into overlapping windows, each read with the whole question
(``[CLS] question [SEP] part of the paragraph [SEP]``); ``stride`` tokens of the paragraph are
shared by consecutive windows, so an answer cut by one window's edge lies whole inside the next.
Each window keeps, for every token of the paragraph, the characters it came from: an answer found
as a token span maps back to the exact characters of the original text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from sora.errors import SoraError


@dataclass
class Window:
    """One window of a (question, context) pair."""

    ids: np.ndarray  # (T,) token ids
    segments: np.ndarray  # (T,) 0 for [CLS] question [SEP], 1 for the context and the last [SEP]
    offsets: np.ndarray  # (T, 2) character span in the context of each context token; -1 elsewhere
    start: int = 0  # the answer's first token in this window; 0 ([CLS]) when the answer is not inside
    end: int = 0  # its last token (inclusive)

    @property
    def context_tokens(self) -> np.ndarray:  # (T,) True where a token comes from the context
        return self.offsets[:, 0] >= 0


def windows(
    tok: Tokenizer, question: str, context: str, max_len: int, stride: int, answer: tuple[int, int] | None = None
) -> list[Window]:
    """The windows of one pair; ``answer`` (first character, end character exclusive) gives each window its
    target tokens. ``tok`` is used as it is set up for pairs (its truncation is set here and restored)."""
    saved = tok.truncation
    tok.enable_truncation(max_len, stride=stride, strategy="only_second")
    try:
        first = tok.encode(question, context)
    except Exception as e:  # noqa: BLE001  tokenizers raises plain Exceptions (question longer than max_len)
        raise SoraError(f"cannot cut windows of {max_len} tokens with stride {stride}: {e}") from None
    finally:
        _restore(tok, saved)
    out = []
    for enc in [first, *first.overflowing]:
        offsets = np.full((len(enc.ids), 2), -1, dtype=np.int64)
        for i, (seq, span) in enumerate(zip(enc.sequence_ids, enc.offsets)):
            if seq == 1:
                offsets[i] = span
        window = Window(np.asarray(enc.ids, np.int32), np.asarray(enc.type_ids, np.int32), offsets)
        if answer is not None:
            window.start, window.end = answer_tokens(offsets, *answer)
        out.append(window)
    return out


def answer_tokens(offsets: np.ndarray, first: int, end: int) -> tuple[int, int]:
    """The first and last tokens that cover characters [first, end), or (0, 0) when they are not all inside."""
    inside = offsets[:, 0] >= 0
    if not inside.any() or offsets[inside, 0].min() > first or offsets[inside, 1].max() < end:
        return 0, 0
    starts = np.flatnonzero(inside & (offsets[:, 0] <= first) & (offsets[:, 1] > first))
    ends = np.flatnonzero(inside & (offsets[:, 0] < end) & (offsets[:, 1] >= end))
    if not len(starts) or not len(ends):  # the answer starts or ends between tokens (white space)
        starts = np.flatnonzero(inside & (offsets[:, 1] > first))
        ends = np.flatnonzero(inside & (offsets[:, 0] < end))
    if not len(starts) or not len(ends) or ends[-1] < starts[0]:
        return 0, 0
    return int(starts[0]), int(ends[-1])


def _restore(tok: Tokenizer, saved: dict | None) -> None:
    if saved is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(
            saved["max_length"], stride=saved["stride"], strategy=saved["strategy"], direction=saved["direction"]
        )
