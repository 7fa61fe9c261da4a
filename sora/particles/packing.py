"""Packing: the real positions of a padded batch in one row, so row-wise particles compute nothing for padding.

Linears, norms, the feed-forward network and residuals treat every position alike: run on the (1, N, d) rows of
the N real tokens of a (B, T) batch, they skip the padding a batch of mixed lengths carries. Attention alone needs
the (B, T) layout, to keep each sequence to itself: it unpacks its queries, keys and values, attends with the
usual mask, and packs its output again. A micro-batch of requests in arrival order is about half padding, so this
roughly halves the work of its Linears.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Packing:
    index: Tensor  # (N,) flat positions b * T + t of the real tokens, in order
    batch: int  # B
    length: int  # T

    @classmethod
    def of(cls, valid: Tensor) -> Packing:  # valid (B, T), True at real tokens
        B, T = valid.shape
        return cls(valid.reshape(-1).nonzero().squeeze(1), B, T)

    def pack(self, x: Tensor) -> Tensor:  # (B, T, f) -> (1, N, f)
        return x.reshape(self.batch * self.length, x.shape[-1]).index_select(0, self.index).unsqueeze(0)

    def unpack(self, x: Tensor) -> Tensor:  # (1, N, f) -> (B, T, f), zeros at the padding
        flat = x.new_zeros(self.batch * self.length, x.shape[-1]).index_copy_(0, self.index, x[0])
        return flat.view(self.batch, self.length, -1)
