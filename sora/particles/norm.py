"""Normalisation particles: LayerNorm or RMSNorm."""

from torch import nn


def make_norm(kind: str, d_model: int, eps: float = 1e-5) -> nn.Module:
    if kind == "layernorm":
        norm = nn.LayerNorm(d_model, eps=eps)
    elif kind == "rmsnorm":
        norm = nn.RMSNorm(d_model, eps=eps)
    else:
        raise ValueError(f"unknown norm {kind!r}; expected 'layernorm' or 'rmsnorm'")
    return norm
