"""Text from a model folder: continue a prompt (decoder LM) or translate it (seq2seq)."""

from __future__ import annotations

import torch
from torch import nn

from sora.errors import SoraError


def generate_text(model: nn.Module, tokenizer, prompt: str, *, max_new_tokens: int = 200, temperature: float = 0.8,
                  top_k: int | None = None, top_p: float | None = None, beam: int = 1, seed: int | None = None,
                  samples: int = 1) -> list[str]:
    """``samples`` continuations of ``prompt`` (decoder LM), or its translation (seq2seq), as text."""
    if tokenizer is None:
        raise SoraError("the model folder has no tokenizer.json: cannot turn text into ids")
    arch = model.config.arch
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    if arch == "decoder_lm":
        bos = model.config.bos_id
        if not ids:
            if bos is None:
                raise SoraError("--prompt: empty, and the model has no bos_id to start from")
            ids = [bos]
        ids = ids[-model.config.max_len :]
        prompts = torch.tensor([ids] * samples)  # (samples, T)
        out = model.generate(prompts, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             generator=generator)
        return [tokenizer.decode(row.tolist(), skip_special_tokens=True) for row in out]
    if arch == "seq2seq":
        if not ids:
            raise SoraError("--prompt: empty; give the text to translate")
        ids = tokenizer.encode(prompt).ids  # with what training added (the end-of-sequence token)
        src = torch.tensor([ids[-model.config.max_len :]])
        out = model.generate(src, max_new_tokens, beam=beam)
        return [tokenizer.decode(out[0], skip_special_tokens=True)]
    raise SoraError(f"generate needs a decoder_lm or seq2seq model; this one is '{arch}' (use `sora eval`)")
