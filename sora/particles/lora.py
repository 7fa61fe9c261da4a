"""LoRA (Hu et al. 2021) as a particle: a frozen Linear plus a trainable low-rank update.

``W x + (alpha / r) B A x`` with A (r, in) small random and B (out, r) zero, so a fresh adapter changes
nothing; merging folds ``(alpha / r) B A`` into W and gives back a plain Linear. Where adapters go and how
they are saved: sora.models.adapters (training) and sora.compress.lora (recovery after pruning).
"""

import math

import torch
from torch import Tensor, nn

from sora.particles.linear import WrappedLinear


class LoRALinear(WrappedLinear):
    """A frozen Linear plus a trainable low-rank update."""

    kind = "lora_linear"

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__(base)
        self.rank, self.scaling = rank, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))  # (out, r) zero: starts as a no-op
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    @property
    def weight(self) -> Tensor:  # the merged weight, for code that reads .weight (e.g. importance)
        return self.base.weight + self.scaling * self.lora_B @ self.lora_A

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += self.scaling * self.lora_B @ self.lora_A
        return self.base
