"""Key/value cache for incremental decoding: each step attends to all earlier keys and values
without recomputing them."""

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class KVCache:
    k: Tensor | None = None  # (B, H, S, dh)
    v: Tensor | None = None  # (B, H, S, dh)
    seen: int = 0  # positions decoded so far: S, also for a layer with no heads (which stores nothing)

    def __post_init__(self):
        if self.k is not None and not self.seen:  # a cache made from stored keys (an exported graph's past)
            self.seen = self.k.shape[2]

    @property
    def length(self) -> int:
        return self.seen

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this step's keys and values; return everything seen so far."""
        self.seen += k.shape[2]
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v

    def advance(self, positions: int) -> None:
        """Count positions without storing keys or values (a layer whose heads were all pruned)."""
        self.seen += positions

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search picks which hypotheses survive)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


@dataclass
class LayerCache:
    """One block's caches: its self-attention, and (seq2seq) its cross-attention to the source,
    whose keys and values are computed once."""

    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=KVCache)

    def reorder(self, index: Tensor) -> None:
        self.self_attn.reorder(index)
        self.cross_attn.reorder(index)
