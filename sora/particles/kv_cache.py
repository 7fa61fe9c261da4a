"""Key/value cache for incremental decoding: each step attends to all earlier keys and values
without recomputing them.

A cache given a ``capacity`` (what generation knows it will need: prompt plus new tokens) writes each
step's keys and values into buffers allocated once, and hands attention views of the filled part: no
``torch.cat`` per step, which copied the whole cache every token (14% of a GPT-2-shaped decoder's
greedy generation at batch 1). Without one it grows by concatenation, as a traced ONNX decoder step
needs (its past comes in as tensors and its present goes out as one).
"""

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class KVCache:
    k: Tensor | None = None  # (B, H, S, dh) the keys seen so far (a view of the buffer when preallocated)
    v: Tensor | None = None  # (B, H, S, dh)
    seen: int = 0  # positions decoded so far: S, also for a layer with no heads (which stores nothing)
    capacity: int | None = None  # positions to preallocate on the first extend; None grows by concatenation
    _k_buffer: Tensor | None = field(default=None, repr=False)  # (B, H, capacity, dh)
    _v_buffer: Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.k is not None and not self.seen:  # a cache made from stored keys (an exported graph's past)
            self.seen = self.k.shape[2]

    @property
    def length(self) -> int:
        return self.seen

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this step's keys and values (B, H, T, dh); return everything seen so far (B, H, S + T, dh)."""
        start, end = self.seen, self.seen + k.shape[2]
        self.seen = end
        if self.capacity is None:
            if self.k is not None:
                k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
            self.k, self.v = k, v
            return k, v
        if self._k_buffer is None or end > self._k_buffer.shape[2]:
            self._grow(k, max(self.capacity, 2 * end))
        self._k_buffer[:, :, start:end] = k
        self._v_buffer[:, :, start:end] = v
        self.k, self.v = self._k_buffer[:, :, :end], self._v_buffer[:, :, :end]
        return self.k, self.v

    def _grow(self, like: Tensor, positions: int) -> None:
        """(Re)allocate the buffers for ``positions``, keeping what they hold (a step past ``capacity``)."""
        B, H, _, dh = like.shape
        k_buffer, v_buffer = (like.new_empty(B, H, positions, dh) for _ in range(2))
        if self.k is not None:
            k_buffer[:, :, : self.k.shape[2]] = self.k
            v_buffer[:, :, : self.v.shape[2]] = self.v
        self._k_buffer, self._v_buffer = k_buffer, v_buffer

    def advance(self, positions: int) -> None:
        """Count positions without storing keys or values (a layer whose heads were all pruned)."""
        self.seen += positions

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search picks which hypotheses survive)."""
        if self.k is None:
            return
        k, v = self.k.index_select(0, index), self.v.index_select(0, index)  # (B', H, S, dh): read before the write
        if self._k_buffer is None:
            self.k, self.v = k, v
            return
        if k.shape[0] != self._k_buffer.shape[0]:  # fewer or more rows: buffers of the new batch size
            self.k, self.v = None, None
            self._grow(k, self._k_buffer.shape[2])
        S = k.shape[2]  # only the filled part moves
        self._k_buffer[:, :, :S], self._v_buffer[:, :, :S] = k, v
        self.k, self.v = self._k_buffer[:, :, :S], self._v_buffer[:, :, :S]


@dataclass
class LayerCache:
    """One block's caches: its self-attention, and (seq2seq) its cross-attention to the source,
    whose keys and values are computed once."""

    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=KVCache)

    @classmethod
    def preallocated(cls, capacity: int | None) -> "LayerCache":
        """Self-attention buffers for ``capacity`` positions (the cross-attention cache is the source's, once)."""
        return cls(KVCache(capacity=capacity))

    def reorder(self, index: Tensor) -> None:
        self.self_attn.reorder(index)
        self.cross_attn.reorder(index)
