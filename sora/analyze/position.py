"""Positional encodings: how similar is position i to position j?

For learned and sinusoidal encodings (``embed.position.vectors``, (L, d)) the cosine similarity
matrix shows what the model can tell apart: a bright diagonal band means nearby positions look
alike (a sense of distance), a sharp diagonal means each position is its own symbol. Rotary
encodings live inside attention; their cos/sin table is shown the same way. Only the first
``limit`` positions are shown (the data rarely reaches ``max_len``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sora.particles import Rotary


def position_tables(model: nn.Module) -> dict[str, tuple[str, Tensor]]:
    """Position vectors by particle name: {name: (kind, (L, d) table)}."""
    out = {}
    for name, module in model.named_modules():
        if name.endswith("embed") and getattr(module, "position", None) is not None:
            position = module.position
            out[f"{name}.position"] = (type(position).__name__, position.vectors.detach())
    if not out:
        for name, module in model.named_modules():
            if isinstance(module, Rotary):
                out["rotary"] = ("Rotary", module.vectors.detach())
                break
    return out


def similarity(vectors: Tensor, limit: int = 128) -> Tensor:
    """Cosine similarity (N, N) of the first ``limit`` position vectors."""
    v = F.normalize(vectors[:limit].float(), dim=-1)
    return v @ v.T


def by_distance(sim: Tensor, max_distance: int = 32) -> list[float]:
    """Mean similarity of positions k apart, k = 0 .. max_distance."""
    n = sim.shape[0]
    return [float(sim.diagonal(k).mean()) for k in range(min(max_distance + 1, n))]


def position_analysis(model: nn.Module, limit: int = 128) -> dict[str, dict]:
    out = {}
    for name, (kind, table) in position_tables(model).items():
        sim = similarity(table, limit)
        out[name] = {
            "kind": kind,
            "positions": int(sim.shape[0]),
            "dim": int(table.shape[1]),
            "similarity_by_distance": [round(x, 5) for x in by_distance(sim)],
            "matrix": sim,
        }
    return out
