"""Positional encodings: sinusoidal (fixed), learned (a table), rotary (rotates Q and K).

Sinusoidal and learned encodings are added to the embeddings (their ``hook_out`` holds the (T, d)
vectors added, one per position, shared by the batch); rotary is applied inside attention, so the
attention particle holds it. ``offset`` is the number of positions already
seen (the KV-cache length during incremental decoding).
"""

import math

import torch
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint


class SinusoidalPosition(nn.Module):
    kind = "position"

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)  # (L, 1)
        freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (d/2,)
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
        self.register_buffer("table", table, persistent=False)
        self.hook_out = HookPoint()  # (T, d) the vectors of positions offset .. offset + T - 1

    def forward(self, length: int, offset: int = 0) -> Tensor:  # -> (T, d)
        _check_length(length + offset, self.table.shape[0])
        return self.hook_out(self.table[offset : offset + length])

    @property
    def vectors(self) -> Tensor:
        return self.table


class LearnedPosition(nn.Module):
    kind = "position"

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.hook_out = HookPoint()  # (T, d) the vectors of positions offset .. offset + T - 1

    def forward(self, length: int, offset: int = 0) -> Tensor:  # -> (T, d)
        _check_length(length + offset, self.weight.shape[0])
        return self.hook_out(self.weight[offset : offset + length])

    @property
    def vectors(self) -> Tensor:
        return self.weight


class Rotary(nn.Module):
    """RoPE (Su et al. 2021): rotate pairs of Q/K features by position-dependent angles.

    It has no hook point of its own: attention rotates Q and K right after splitting them into heads,
    so its ``hook_q`` and ``hook_k`` both hold the rotated vectors (and the cache keeps rotated keys)."""

    kind = "rotary_position"

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary position needs an even head_dim, got {head_dim}")
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)  # (dh/2,)
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (L, dh/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:  # (B, H, T, dh) -> same
        T = x.shape[-2]
        _check_length(T + offset, self.cos.shape[0])
        rotation = torch.complex(self.cos[offset : offset + T], self.sin[offset : offset + T])  # (T, dh/2)
        # feature pairs (2i, 2i+1) as complex numbers: one complex product rotates them all, about
        # 3x faster than slicing the pairs apart and stacking them back (fwd + bwd, on CPU)
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (B, H, T, dh/2)
        return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)

    @property
    def vectors(self) -> Tensor:
        return torch.cat([self.cos, self.sin], dim=-1)


def _check_length(length: int, max_len: int) -> None:
    if length > max_len:
        raise ValueError(f"sequence of {length} positions is longer than max_len={max_len}")
