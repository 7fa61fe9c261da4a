"""Token-by-token generation on either backend, and its text as pieces.

``next_tokens`` is ``DecoderLM.generate`` step by step (the same sliding window when the context is full,
the same end-of-sequence rule, the same sampling), written against a backend's *steps* so that torch and
onnxruntime share it; a seq2seq decoder is the same loop started from the begin token. It yields each
step's tokens, so a caller can stream them.

``text_pieces`` turns streamed ids into text as it becomes final: each piece is what the text of all ids so
far adds, so a character split over byte-level tokens, or a WordPiece ``##`` continuation, comes out right,
and the pieces joined are exactly ``continuation`` of all the ids.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch import Tensor

from sora.models.sampling import next_token

INCOMPLETE = "\ufffd"  # what decoding shows for bytes of a character not yet complete


def next_tokens(
    steps,
    ids: Tensor,  # (B, T) prompts of one length
    max_new_tokens: int,
    *,
    max_len: int,
    eos_id: int | None,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:  # (B,) each step; stops once every row has produced eos_id
    steps.reset()
    with torch.inference_mode():
        done = torch.zeros(ids.shape[0], dtype=torch.bool)
    step_input = ids
    for _ in range(max_new_tokens):
        with torch.inference_mode():
            if steps.fed + step_input.shape[1] > max_len:
                steps.reset()
                step_input = ids[:, -max_len + 1 :]  # slide the window, as DecoderLM.generate does
            logits = steps(step_input)[:, -1].float()  # (B, V)
            token = next_token(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            if eos_id is not None:
                token = token.masked_fill(done, eos_id)
                done = done | (token == eos_id)
            ids = torch.cat([ids, token[:, None]], dim=1)
            step_input = token[:, None]
        yield token
        if eos_id is not None and bool(done.all()):
            return


def generated(tokens: Iterable[Tensor], n: int, eos_id: int | None) -> list[list[int]]:
    """Each row's new ids, up to (not including) its end-of-sequence token."""
    rows: list[list[int]] = [[] for _ in range(n)]
    finished = [False] * n
    for step in tokens:
        for row, token in enumerate(step.tolist()):
            if finished[row]:
                continue
            if token == eos_id:
                finished[row] = True
            else:
                rows[row].append(token)
    return rows


def continuation(tokenizer, prompt: list[int], new: list[int], base: str | None = None) -> str:
    """The text ``new`` adds after ``prompt`` (``base``: the prompt's text, when known)."""
    base = tokenizer.decode(prompt, skip_special_tokens=True) if base is None else base
    full = tokenizer.decode(prompt + new, skip_special_tokens=True)
    return full[len(base) :] if full.startswith(base) else tokenizer.decode(new, skip_special_tokens=True)


def text_pieces(tokenizer, prompt: list[int], tokens: Iterable[int]) -> Iterator[str]:
    """The text of streamed ``tokens`` as it becomes final (a piece may span several tokens)."""
    base = tokenizer.decode(prompt, skip_special_tokens=True)
    new: list[int] = []
    shown = ""
    for token in tokens:
        new.append(token)
        text = continuation(tokenizer, prompt, new, base)
        if text.endswith(INCOMPLETE) or not text.startswith(shown) or len(text) == len(shown):
            continue
        yield text[len(shown) :]
        shown = text
    text = continuation(tokenizer, prompt, new, base)
    if text.startswith(shown) and len(text) > len(shown):
        yield text[len(shown) :]  # what was held back at the end
