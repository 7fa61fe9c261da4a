"""Bottleneck adapters (Houlsby et al. 2019): a small trainable detour after a frozen sublayer's output.

``y + up(act(down(y)))`` where ``y`` is the sublayer's output projection (attention's ``out_proj``, the
feed-forward's ``fc_out``), before the residual sum: d -> m -> d with m much smaller than d. ``up`` starts
at zero, so a fresh adapter changes nothing. Unlike LoRA it is not linear and cannot fold into the base
weight: an adapted model keeps it (the model config records it, so the folder rebuilds it).
"""

import torch
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint
from sora.particles.linear import WrappedLinear


class BottleneckAdapter(nn.Module):
    kind = "bottleneck_adapter"

    def __init__(self, d_model: int, size: int):
        super().__init__()
        self.down = nn.Linear(d_model, size)
        self.up = nn.Linear(size, d_model)
        nn.init.normal_(self.down.weight, std=0.01)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.hook_out = HookPoint()  # (..., d) what the adapter adds

    def forward(self, y: Tensor) -> Tensor:  # (..., d) -> (..., d)
        return y + self.hook_out(self.up(torch.nn.functional.gelu(self.down(y))))


class AdaptedLinear(WrappedLinear):
    """A frozen Linear whose output passes through a bottleneck adapter."""

    kind = "adapted_linear"

    def __init__(self, base: nn.Linear, size: int):
        super().__init__(base)
        self.adapter = BottleneckAdapter(base.out_features, size)

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        return self.adapter(self.base(x))
