"""``nn.Linear`` that may have zero inputs or outputs (a layer pruned to no heads or neurons)."""

import warnings

from torch import Tensor, nn


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(in_features, out_features, bias=bias)


def is_plain_linear(module: nn.Module) -> bool:
    """A float ``nn.Linear`` with an ordinary weight: not int8, LoRA, or a quantized tensor subclass.
    Only then may a gate be folded into its weight (``F.linear(x, W * gate)``)."""
    return type(module) is nn.Linear and type(module.weight) is nn.Parameter


def needs_gate(gate: Tensor) -> bool:
    """Whether multiplying by ``gate`` changes anything. All ones (no particle switched off) is the
    common case after quantization; the check is one small reduction on CPU, and skipped on GPUs,
    where it would wait for the device and the multiply costs little anyway."""
    return gate.device.type != "cpu" or not bool(gate.eq(1).all())
