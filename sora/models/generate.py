"""Text from a model folder: continue a prompt (decoder LM) or translate it (seq2seq).

What the tokenizer cannot encode is said, never dropped quietly: a warning names those characters,
and a prompt of which nothing can be encoded is an error.
"""

from __future__ import annotations

import json
import warnings

import torch
from tokenizers import Tokenizer
from torch import nn

from sora.errors import SoraError, SoraWarning
from sora.models.beam import lm_beam_search

SHOWN_CHARS = 10  # unencodable characters named in a warning; the rest are counted


def generate_text(
    model: nn.Module,
    tokenizer,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    beam: int = 1,
    seed: int | None = None,
    samples: int = 1,
) -> list[str]:
    """``samples`` continuations of ``prompt`` (decoder LM), or its translation (seq2seq), as text.

    ``beam`` > 1 searches for the most likely output instead of sampling (one output, same every time)."""
    if tokenizer is None:
        raise SoraError("the model folder has no tokenizer.json: cannot turn text into ids")
    arch = model.config.arch
    if arch not in ("decoder_lm", "seq2seq"):
        raise SoraError(f"generate needs a decoder_lm or seq2seq model; this one is '{arch}' (use `sora eval`)")
    if beam > 1 and samples > 1:
        raise SoraError(
            f"--samples {samples} with --beam {beam}: beam search gives the one most likely output; "
            "sample several with --beam 1"
        )
    ids = prompt_ids(tokenizer, prompt)
    if arch == "decoder_lm":
        return _continue(
            model,
            tokenizer,
            ids,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            beam=beam,
            seed=seed,
            samples=samples,
        )
    if not ids:
        raise SoraError("--prompt: empty; give the text to translate")
    if samples > 1 or top_k is not None or top_p is not None or seed is not None:
        raise SoraError(
            "--samples, --top-k, --top-p and --seed sample a language model's continuations; a seq2seq "
            "model translates greedily or by beam search (--beam), one output"
        )
    ids = tokenizer.encode(prompt).ids  # with what training added (the end-of-sequence token)
    src = torch.tensor([_window(ids, model.config.max_len)])
    out = model.generate(src, _decoder_room(max_new_tokens, model.config.max_len), beam=beam)
    return [tokenizer.decode(out[0], skip_special_tokens=True)]


def _window(ids: list[int], max_len: int) -> list[int]:
    """The last ``max_len`` ids of a prompt: what the model can read; a longer prompt is said, not cut quietly."""
    if len(ids) > max_len:
        warnings.warn(
            f"--prompt: {len(ids)} tokens, but the model reads at most {max_len} (max_len): the first "
            f"{len(ids) - max_len} are left out",
            SoraWarning,
            stacklevel=3,
        )
    return ids[-max_len:]


def _decoder_room(max_new_tokens: int, max_len: int) -> int:
    """A seq2seq decoder holds ``max_len`` positions, its start token included: more new tokens cannot fit."""
    if max_new_tokens > max_len - 1:
        warnings.warn(
            f"--max-new-tokens {max_new_tokens}: this model writes at most {max_len - 1} tokens "
            f"(max_len {max_len}, one for the start token)",
            SoraWarning,
            stacklevel=3,
        )
    return min(max_new_tokens, max_len - 1)


def _continue(
    model: nn.Module,
    tokenizer,
    ids: list[int],
    *,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    beam: int,
    seed: int | None,
    samples: int,
) -> list[str]:
    """Continuations of a decoder LM: sampled (``samples`` of them), or the beam search's best."""
    if not ids:
        if model.config.bos_id is None:
            raise SoraError("--prompt: empty, and the model has no bos_id to start from")
        ids = [model.config.bos_id]
    ids = _window(ids, model.config.max_len)
    if beam > 1:
        best = lm_beam_search(model, torch.tensor([ids]), beam=beam, max_new_tokens=max_new_tokens)[0]
        return [tokenizer.decode(ids + best, skip_special_tokens=True)]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    prompts = torch.tensor([ids] * samples)  # (samples, T)
    out = model.generate(
        prompts, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    )
    return [tokenizer.decode(row.tolist(), skip_special_tokens=True) for row in out]


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids without special tokens; warns about characters the tokenizer cannot encode,
    and refuses a prompt of which nothing can be encoded."""
    encoding = tokenizer.encode(prompt, add_special_tokens=False)
    unknown, dropped = unencodable(tokenizer, prompt)
    if unknown or dropped:
        unk = unknown_token(tokenizer)
        said = "; ".join(_listed(unknown, f"read as {unk}") + _listed(dropped, "dropped"))
        if all(token == unk for token in encoding.tokens):
            raise SoraError(f"--prompt: the tokenizer can encode none of it ({said})")
        warnings.warn(f"--prompt: the tokenizer cannot encode {said}", SoraWarning, stacklevel=2)
    return encoding.ids


def unencodable(tokenizer, text: str) -> tuple[list[str], list[str]]:
    """The characters of ``text`` the tokenizer reads as its unknown token, and those it drops, each in
    order of first appearance.

    Each character of the normalised text is encoded alone (token offsets cannot tell: a tokenizer that
    drops characters misplaces the offsets after them), and the user's characters that normalise to a
    failing one are named. White space that only separates words, and what the normaliser removes on
    purpose (stop words, the ends' white space), do not count."""
    norm = tokenizer.normalizer
    normalize = norm.normalize_str if norm is not None else (lambda t: t)
    bare = Tokenizer.from_str(tokenizer.to_str())  # the same model without its normaliser
    bare.normalizer = None
    unk = unknown_token(tokenizer)
    unknown, dropped = set(), set()
    for char in set(normalize(text)):
        tokens = bare.encode(char, add_special_tokens=False).tokens
        if not tokens and not char.isspace():  # white space only separates words in most tokenizers
            dropped.add(char)
        elif tokens and all(token == unk for token in tokens):
            unknown.add(char)
    typed = {c: set(normalize(c)) or {c} for c in text}  # alone, white space normalises to nothing
    return [c for c, n in typed.items() if n & unknown], [c for c, n in typed.items() if n & dropped]


def unknown_token(tokenizer) -> str | None:
    """The tokenizer model's unknown token (``[UNK]``, ``<unk>``), or None when it has none."""
    return json.loads(tokenizer.to_str())["model"].get("unk_token")


def _listed(chars: list[str], fate: str) -> list[str]:
    if not chars:
        return []
    shown = ", ".join(repr(c) for c in chars[:SHOWN_CHARS])
    more = f" and {len(chars) - SHOWN_CHARS} more" if len(chars) > SHOWN_CHARS else ""
    return [f"{shown}{more} ({fate})"]
