"""int8 particles: a dynamically quantized Linear and an int8 token embedding.

Both keep their int8 weights and per-row fp32 scales as ordinary buffers, so a quantized model's
``state_dict`` is exactly what goes into ``model.safetensors`` (nothing pickled, unlike
``torch.ao``'s packed-parameter modules), and loading is ``load_state_dict``.

``Int8Linear`` runs fbgemm's dynamic int8 GEMM (``torch.ops.quantized.linear_dynamic``, the kernel
behind ``torch.ao.quantization.quantize_dynamic``): activations are quantized to uint8 per call
(with ``reduce_range``, as this AVX2 CPU without VNNI needs), weights are int8 symmetric per output
channel. The packed weight is a cache built on first use and dropped on copy or reload.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.particles import HookPoint


def quantize_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per row: ``weight ~ q * scale[:, None]`` with q in [-127, 127]."""
    amax = weight.detach().abs().amax(dim=1).float()  # (rows,)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(weight.detach().float() / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """int8 weights; ``compute="int8"`` runs the int8 GEMM, ``"fp32"`` multiplies by the dequantized
    weights (for matrices too small for int8 to pay: still int8 on disk, as fast as fp32)."""

    kind = "int8_linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, compute: str = "int8"):
        super().__init__()
        if compute not in ("int8", "fp32"):
            raise ValueError(f"compute must be 'int8' or 'fp32', got {compute!r}")
        self.in_features, self.out_features, self.compute = in_features, out_features, compute
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))  # (out, in)
        self.register_buffer("scale", torch.ones(out_features))  # (out,)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed = None
        self.register_load_state_dict_post_hook(lambda module, keys: module._unpack())

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute: str = "int8") -> Int8Linear:
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, compute=compute)
        q.weight, q.scale = quantize_rows(linear.weight)
        if linear.bias is not None:
            q.bias = linear.bias.detach().float().clone()
        return q

    def _unpack(self) -> None:
        self._packed = None

    def _pack(self):
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated in name, still the fastest path here
            warnings.simplefilter("ignore")
            qweight = torch._make_per_channel_quantized_tensor(self.weight, self.scale.double(), zero_points, 0)
            return torch.ops.quantized.linear_prepack(qweight, self.bias)

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        if self._packed is None:  # a cache: the packed int8 matrix, or the dequantized fp32 one
            self._packed = self._pack() if self.compute == "int8" else self.dequantized()
        if self.compute == "fp32":
            return F.linear(x, self._packed, self.bias)
        return torch.ops.quantized.linear_dynamic(x, self._packed, True)

    def dequantized(self) -> Tensor:  # (out, in) fp32
        return self.weight.float() * self.scale[:, None]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_packed"] = None  # the packed cache is a C++ object: rebuild it instead of copying
        return state

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"compute={self.compute}")


class Int8Embedding(nn.Module):
    """A token embedding stored as int8 rows with one fp32 scale each.

    The lookup reads a dequantized fp32 table built on first use (like fp32-compute Int8Linear): a
    gather from int8 plus a rescale per call measured slower than fp32 at batch 1, and int8 here
    is for the disk, not for speed."""

    kind = "token_embedding"

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(vocab_size, d_model, dtype=torch.int8))  # (V, d)
        self.register_buffer("scale", torch.ones(vocab_size))  # (V,)
        self.hook_out = HookPoint()  # (B, T, d)
        self._table = None
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_table", None))

    @classmethod
    def from_embedding(cls, embedding: nn.Module) -> Int8Embedding:
        q = cls(*embedding.weight.shape)
        q.weight, q.scale = quantize_rows(embedding.weight)
        return q

    def forward(self, ids: Tensor) -> Tensor:  # (B, T) -> (B, T, d)
        if self._table is None:
            self._table = self.weight.float() * self.scale[:, None]  # (V, d)
        return self.hook_out(F.embedding(ids, self._table))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_table"] = None
        return state

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]
