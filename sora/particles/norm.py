"""Normalisation particles: LayerNorm or RMSNorm, with a hook point on the normalised output.

They subclass PyTorch's own modules, so parameter names (``weight``, ``bias``) and kernels are
PyTorch's.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint


class LayerNorm(nn.LayerNorm):
    kind = "layernorm"

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__(d_model, eps=eps)
        self.hook_out = HookPoint()  # (B, T, d) the normalised input

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_out(F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps))


class RMSNorm(nn.RMSNorm):
    kind = "rmsnorm"

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__(d_model, eps=eps)
        self.hook_out = HookPoint()  # (B, T, d) the normalised input

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_out(super().forward(x))


def make_norm(kind: str, d_model: int, eps: float = 1e-5) -> nn.Module:
    if kind == "layernorm":
        return LayerNorm(d_model, eps)
    if kind == "rmsnorm":
        return RMSNorm(d_model, eps)
    raise ValueError(f"unknown norm {kind!r}; expected 'layernorm' or 'rmsnorm'")
