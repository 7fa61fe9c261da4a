"""Position-wise feed-forward network whose every hidden unit is an addressable neuron
(``layers.3.ffn.neuron.1021``).

ReLU, GELU (exact or tanh) or SwiGLU. ``neuron_mask[i] = 0`` switches neuron i off; removing it
for real slices row i of ``fc_in`` (and ``fc_gate``) and column i of ``fc_out``. A width of zero
leaves only the output bias, which is zero in a model built that way.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint
from sora.particles.linear import GateCheck, is_plain_linear, linear

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "swiglu": F.silu,  # applied to the gate branch
}


class FeedForward(nn.Module):
    kind = "feedforward"

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", *, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.activation, self.d_ff = activation, d_ff
        self.fc_in = linear(d_model, d_ff, bias=bias)
        self.fc_gate = linear(d_model, d_ff, bias=bias) if activation == "swiglu" else None
        self.fc_out = linear(d_ff, d_model, bias=bias)
        if d_ff == 0 and bias:
            nn.init.zeros_(self.fc_out.bias)
        self.register_buffer("neuron_mask", torch.ones(d_ff))  # (F,) 0 switches a neuron off
        self._mask_check = GateCheck()  # multiply by the mask only when a neuron is off
        self.dropout = nn.Dropout(dropout)
        self.hook_in = HookPoint()  # (B, T, d)
        self.hook_pre = HookPoint()  # (B, T, F) fc_in's output, before the nonlinearity (SwiGLU: the gated branch)
        self.hook_post = HookPoint()  # (B, T, F) neuron activations, masked (formed only when hooked or needed)
        self.hook_out = HookPoint()  # (B, T, d)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d) -> (B, T, d)
        x = self.hook_in(x)
        pre = self.hook_pre(self.fc_in(x))
        if self.fc_gate is not None:
            h = F.silu(self.fc_gate(x)) * pre
        else:
            h = ACTIVATIONS[self.activation](pre)
        masked = self._mask_check(self.neuron_mask)
        if masked and not self.hook_post.active and is_plain_linear(self.fc_out):
            # the same product, cheaper: mask fc_out's d_ff columns instead of all B*T*d_ff activations
            return self.hook_out(F.linear(self._dropped(h), self.fc_out.weight * self.neuron_mask, self.fc_out.bias))
        if self.hook_post.active or masked:
            h = self.hook_post(h * self.neuron_mask)
        return self.hook_out(self.fc_out(self._dropped(h)))

    def _dropped(self, h: Tensor) -> Tensor:
        """Dropout while training; at inference not even the module call."""
        return self.dropout(h) if self.training else h
