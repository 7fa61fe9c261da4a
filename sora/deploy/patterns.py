"""Attention patterns of one input, per layer and head, read at the particles' ``hook_pattern`` hook points.

A hook listening there makes attention take its explicit path and hand over softmax(QK^T/sqrt(dh) + mask),
(B, H, T, S), so the patterns are exactly what the model computed. Heads are named as everywhere else
(``layers.1.attn.head.3``; a seq2seq model's source side: ``encoder.layers.1.attn.head.3``); a pruned layer
with no heads has no pattern and is left out.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor, nn

from sora.models import Seq2Seq


def attention_patterns(model: nn.Module, feeds: dict[str, Tensor]) -> list[dict]:
    """[{"layer": i, "heads": [{"name", "pattern": T x S floats}]}] for one input (a batch of one)."""
    stack, prefix = (model.encoder, "encoder.") if isinstance(model, Seq2Seq) else (model, "")
    seen: dict[int, Tensor] = {}
    me = threading.get_ident()  # another thread running the model meanwhile (a server) is not recorded

    def record(i: int, pattern: Tensor) -> None:
        if threading.get_ident() == me:
            seen[i] = pattern[0]  # (H, T, S)

    handles = [
        block.attn.hook_pattern.register_forward_hook(lambda _m, _i, out, i=i: record(i, out))
        for i, block in enumerate(stack.layers)
        if block.attn.n_heads > 0
    ]
    try:
        with torch.inference_mode():
            x = next(feeds[k] for k in ("input_ids", "pixels", "mels") if k in feeds)
            if isinstance(model, Seq2Seq):
                model.encode(x, feeds.get("valid"))
            else:
                model(x, feeds.get("valid"), *((feeds["segments"],) if "segments" in feeds else ()))
    finally:
        for handle in handles:
            handle.remove()
    return [
        {
            "layer": i,
            "heads": [
                {"name": f"{prefix}layers.{i}.attn.head.{h}", "pattern": pattern[h].float().tolist()}  # (T, S)
                for h in range(pattern.shape[0])
            ],
        }
        for i, pattern in sorted(seen.items())
    ]


def patch_names(model: nn.Module, n_tokens: int) -> list[str]:
    """What the positions of an image or audio model are: a leading [CLS] when it has one, then patches."""
    stack = model.encoder if isinstance(model, Seq2Seq) else model
    patches = stack.embed.patches
    lead = ["[CLS]"] if patches is not None and patches.cls is not None else []
    return lead + [f"patch {i}" for i in range(n_tokens - len(lead))]
