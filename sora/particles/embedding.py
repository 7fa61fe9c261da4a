"""Token embedding: ids to vectors."""

import torch
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint


class TokenEmbedding(nn.Module):
    kind = "token_embedding"

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(vocab_size, d_model) * 0.02)
        self.hook_out = HookPoint()  # (B, T, d) each id's row, before position is added

    def forward(self, ids: Tensor) -> Tensor:  # (B, T) -> (B, T, d)
        return self.hook_out(nn.functional.embedding(ids, self.weight))

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]
