"""Segment embedding: which text of a pair each token belongs to (BERT's token types).

A question and its paragraph, or a premise and its hypothesis, travel as one sequence
``[CLS] a [SEP] b [SEP]``; the segment id (0 for ``a``, 1 for ``b``) adds its own vector to every
token so that attention can tell the two texts apart. A single text reads as segment 0 everywhere.
"""

import torch
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint


class SegmentEmbedding(nn.Module):
    kind = "segment_embedding"

    def __init__(self, n_segments: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_segments, d_model) * 0.02)
        self.hook_out = HookPoint()  # (B, T, d) each token's segment vector

    def forward(self, segments: Tensor) -> Tensor:  # (B, T) ids in [0, n_segments) -> (B, T, d)
        return self.hook_out(nn.functional.embedding(segments, self.weight))

    @property
    def n_segments(self) -> int:
        return self.weight.shape[0]
