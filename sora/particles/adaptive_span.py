"""Adaptive attention span (Sukhbaatar et al. 2019).

Each head learns how far back it looks. A soft ramp mask ``m(x) = clamp((z*S - x) / R + 1, 0, 1)``
of the query-key distance x multiplies the attention weights, which are then renormalised;
``z`` in [0, 1] is a learned fraction of the maximum span S and R is the ramp width. The trainer
adds ``penalty()`` to the loss so that heads keep only the span they need.
"""

import torch
from torch import Tensor, nn


class AdaptiveSpan(nn.Module):
    kind = "adaptive_span"

    def __init__(self, n_heads: int, max_span: int, ramp: int = 32, init: float = 0.5):
        super().__init__()
        self.max_span, self.ramp = max_span, ramp
        self.span_fraction = nn.Parameter(torch.full((n_heads,), float(init)))  # (H,)

    def mask(self, q_len: int, k_len: int) -> Tensor:  # -> (H, T, S) in [0, 1]
        device = self.span_fraction.device
        q_pos = torch.arange(k_len - q_len, k_len, device=device)
        dist = (q_pos[:, None] - torch.arange(k_len, device=device)[None, :]).abs()  # (T, S)
        span = self.span_fraction.clamp(0, 1) * self.max_span  # (H,)
        return ((span[:, None, None] - dist) / self.ramp + 1).clamp(0, 1)

    def apply(self, weights: Tensor) -> Tensor:  # (B, H, T, S) -> (B, H, T, S), rows sum to 1
        m = self.mask(weights.shape[-2], weights.shape[-1]).to(weights.dtype)
        weights = weights * m
        return weights / weights.sum(-1, keepdim=True).clamp_min(1e-8)

    def penalty(self) -> Tensor:
        """Mean span in positions: the trainer scales it by its coefficient and adds it to the loss."""
        return (self.span_fraction.clamp(0, 1) * self.max_span).mean()

    def spans(self) -> Tensor:  # (H,) current span of each head, in positions
        return (self.span_fraction.detach().clamp(0, 1) * self.max_span + self.ramp).round()

    def clamp_(self) -> None:
        with torch.no_grad():
            self.span_fraction.clamp_(0, 1)
