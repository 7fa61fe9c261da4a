"""Linear projections as particles use them: sizes that may be zero (a layer pruned to no heads or
neurons), several projections of one input at once, and when a gate may be folded into a weight."""

import warnings

import torch
from torch import Tensor, nn


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(in_features, out_features, bias=bias)


def project(x: Tensor, *projections: nn.Module) -> list[Tensor]:
    """Several projections of one input (Q, K, V). A projection type that can do them at once
    (``project_together``: int8 Linears, one activation quantization and one GEMM) does so."""
    together = getattr(type(projections[0]), "project_together", None)
    if together is not None and all(type(p) is type(projections[0]) for p in projections):
        return together(projections, x)
    return [p(x) for p in projections]


def is_plain_linear(module: nn.Module) -> bool:
    """A float ``nn.Linear`` with an ordinary weight: not int8, LoRA, or a quantized tensor subclass.
    Only then may a gate be folded into its weight (``F.linear(x, W * gate)``)."""
    return type(module) is nn.Linear and type(module.weight) is nn.Parameter


class GateCheck:
    """Whether multiplying by a gate changes anything, remembered until the gate changes.

    All ones (no particle switched off) is the common case, and multiplying a weight by an all-ones
    gate on every call cost 9-12% of a MiniLM forward pass at batch 1 on CPU. The answer is kept
    until the buffer is replaced or written in place (its version counter moves), so a forward pass
    pays no reduction. An inference tensor (a model loaded under ``torch.inference_mode``) has no
    version counter: its gate is checked on every call, a reduction over H or F values that costs far
    less than the weight-sized product it saves (that product was 17% of a MiniLM forward at batch 1).
    On GPUs the check is skipped (it would wait for the device, and the multiply costs little there),
    and a gate that requires grad is always multiplied (its gradient is the point)."""

    def __init__(self):
        self.key, self.needed = None, True

    def __call__(self, gate: Tensor) -> bool:
        if gate.device.type != "cpu" or gate.requires_grad:
            return True
        if gate.is_inference():  # no version counter to remember the answer by
            return not bool(gate.eq(1).all())
        key = (id(gate), gate._version)
        if key != self.key:
            self.key, self.needed = key, not bool(gate.eq(1).all())
        return self.needed


def inference_layout(model: nn.Module, on: bool = True) -> None:
    """Store every plain Linear's weight column-major (its (out, in) shape over (in, out) memory), or back.

    ``F.linear`` multiplies by the weight's transpose, and with few rows (a sentence, a decoding step) oneDNN's
    kernel for a contiguous (in, out) operand ran 1.2-2.5x faster than for the transposed view (1 thread;
    equal from about 300 rows up): MiniLM's forward at batch 1 took 13% less, greedy generation at batch 8 14%
    less. The values do not change, only their order in memory; a weight shared with an embedding (a tied LM
    head) moves with it. Training gets the usual layout back (``Stack.train``)."""
    seen: set[int] = set()
    for module in model.modules():
        if not is_plain_linear(module) or id(module.weight) in seen:
            continue
        seen.add(id(module.weight))
        weight = module.weight
        with torch.inference_mode(weight.is_inference()):  # a normal tensor stays normal (training may follow)
            weight.data = weight.data.t().contiguous().t() if on else weight.data.contiguous()


class WrappedLinear(nn.Module):
    """A Linear with something added (an adapter): code that reads ``.weight``, ``.bias`` or the feature counts
    of a projection reads the wrapped one's."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base

    @property
    def weight(self) -> Tensor:
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features
