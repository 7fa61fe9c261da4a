"""int8 particles: a dynamically quantized Linear and an int8 token embedding.

Both keep their int8 weights and per-row fp32 scales as ordinary buffers, so a quantized model's
``state_dict`` is exactly what goes into ``model.safetensors`` (nothing pickled, unlike
``torch.ao``'s packed-parameter modules), and loading is ``load_state_dict``.

``Int8Linear`` runs PyTorch's dynamic int8 GEMM (``torch.ops.quantized.linear_dynamic``, the kernel
behind ``torch.ao.quantization.quantize_dynamic``): activations are quantized to uint8 per call,
weights are int8 symmetric per output channel. Which implementation runs, and with how many
activation bits, depends on the CPU (``REDUCE_RANGE``, ``ONEDNN_FROM_ROWS`` below); a folder does not
record it, so the same folder runs at its best on each machine. Packed weights are a cache built on
first use and rebuilt when a weight changes.

The kernel takes one activation scale per call, so one outlier token anywhere in a batch coarsens
every other token's rounding, and a sentence's result depends on the batch it is in.
``compute="int8_row"`` divides each input row (token) by its own largest magnitude before the
kernel and multiplies the output rows back: per-token resolution from the per-tensor kernel,
for 1.6-1.9x the time of plain int8 on MiniLM's matrices (three more passes over the activations;
docs/compression.md).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint


def quantize_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per row: ``weight ~ q * scale[:, None]`` with q in [-127, 127]."""
    amax = weight.detach().abs().amax(dim=1).float()  # (rows,)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(weight.detach().float() / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def _identity(t: Tensor | None) -> tuple:
    """A tensor's identity and in-place write count: a changed value gives a different key.
    Checked on every call, so the count is asked for once; an inference tensor has none (and
    cannot be written in place outside inference mode)."""
    if t is None:
        return (None,)
    try:
        return (id(t), t._version)
    except RuntimeError:
        return (id(t), -1)


COMPUTE = ("int8", "int8_row", "fp32")


def _cpu_has(feature: str) -> bool:
    check = getattr(torch.cpu, f"_is_{feature}_supported", None)  # private probes: absent on some builds
    return bool(check is not None and check())


# The int8 GEMM, chosen from what the CPU has (measured: docs/compression.md, "The CPU chooses the kernel").
# Without VNNI, fbgemm sums pairs of uint8 x int8 products in 16 bits and needs 7-bit activations
# (reduce_range) not to overflow them; with VNNI the full 8 bits cost nothing and halve the rounding error.
REDUCE_RANGE = not _cpu_has("vnni")
# With AMX, oneDNN's kernel is 1.2-1.9x faster than fbgemm's from 512 rows (tokens) on, but at 256 rows
# it lost on most shapes and at 40 it is up to 2x slower (bench/compress.py, linear_shapes).
# Without AMX oneDNN is unmeasured here, so fbgemm alone runs (None).
ONEDNN_FROM_ROWS = 512 if _cpu_has("amx_tile") and "onednn" in torch.backends.quantized.supported_engines else None
# One or two rows (a token at a time, as in decoding) run fp32 maths on the dequantized weights (kept after
# first use) unless the matrix is large: there quantizing the input costs more than the GEMM saves, and int8
# measured 0.45-0.55x fp32 on 65k-150k weights and 0.7-1.0x on 590k; from 2.4M weights on int8 wins 4x.
FP32_UP_TO_ROWS, FP32_UNDER_WEIGHTS = 2, 1_000_000


def kernel_choice() -> dict:
    """What this CPU gives the int8 GEMM (speed and activation bits depend on it)."""
    return {
        "vnni": _cpu_has("vnni"),
        "amx": _cpu_has("amx_tile"),
        "activation_bits": 7 if REDUCE_RANGE else 8,
        "onednn_from_rows": ONEDNN_FROM_ROWS,
        "fp32_up_to_rows": FP32_UP_TO_ROWS,
    }


def describe_kernels() -> str:
    choice = kernel_choice()
    gemm = f"fbgemm, oneDNN from {choice['onednn_from_rows']} rows (AMX)" if choice["onednn_from_rows"] else "fbgemm"
    return (
        f"{choice['activation_bits']}-bit activations ({'VNNI' if choice['vnni'] else 'no VNNI'}), {gemm}, "
        f"fp32 maths for {choice['fp32_up_to_rows']} rows or fewer"
    )


@contextmanager
def _quantized_engine(name: str):
    """``linear_prepack`` packs for the global engine; the packed weight then keeps its kernel."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


class Int8Linear(nn.Module):
    """int8 weights. ``compute``: ``"int8"`` runs the int8 GEMM with one activation scale per call,
    ``"int8_row"`` the same GEMM with one scale per input row, ``"fp32"`` multiplies by the
    dequantized weights (for matrices too small for int8 to pay: still int8 on disk, as fast as fp32)."""

    kind = "int8_linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, compute: str = "int8"):
        super().__init__()
        if compute not in COMPUTE:
            raise ValueError(f"compute must be one of {', '.join(COMPUTE)}; got {compute!r}")
        self.in_features, self.out_features, self.compute = in_features, out_features, compute
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))  # (out, in)
        self.register_buffer("scale", torch.ones(out_features))  # (out,)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed = None  # (key, {kernel: packed int8 matrix or dequantized fp32 one}): see _kernel

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute: str = "int8") -> Int8Linear:
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, compute=compute)
        q.weight, q.scale = quantize_rows(linear.weight)
        if linear.bias is not None:
            q.bias = linear.bias.detach().float().clone()
        return q

    def _pack(self, kernel: str):
        if kernel == "fp32":
            return self.dequantized()
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings(), _quantized_engine(kernel) if kernel != "default" else nullcontext():
            warnings.simplefilter("ignore")  # quantized tensors are deprecated in name, still the fastest path here
            qweight = torch._make_per_channel_quantized_tensor(self.weight, self.scale.double(), zero_points, 0)
            # row-scaled outputs are rescaled before the bias goes on, so the kernel must not add it
            return torch.ops.quantized.linear_prepack(qweight, self.bias if self.compute == "int8" else None)

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        kernel = "fp32" if self.compute == "fp32" else self.kernel_for(self._rows(x))
        packed = self._kernel(kernel)
        if kernel == "fp32":  # int8 on disk only: as fast as nn.Linear but for these few checks
            return F.linear(x, packed, self._buffers["bias"])
        if self.compute == "int8":
            return torch.ops.quantized.linear_dynamic(x, packed, REDUCE_RANGE)
        # The int8 GEMM passes no gradient, so neither does the scale (and the epilogue may write in place).
        # amax and amin: cheaper than materialising abs() of a 1536-wide activation.
        x = x.detach()
        peak = torch.maximum(x.amax(-1, keepdim=True), x.amin(-1, keepdim=True).neg_())  # (..., 1)
        peak.clamp_(min=torch.finfo(x.dtype).tiny)  # an all-zero row stays zero
        y = torch.ops.quantized.linear_dynamic(x / peak, packed, REDUCE_RANGE)  # (..., out)
        # in place: y is this call's own, and a fresh (B*T, out) tensor cost 15-30% more at 32 sentences
        return y.mul_(peak) if self.bias is None else torch.addcmul(self.bias, y, peak, out=y)

    def _rows(self, x: Tensor) -> int:  # (..., in): the GEMM's M
        return x.numel() // max(self.in_features, 1)

    def kernel_for(self, rows: int) -> str:
        """Which GEMM a call with ``rows`` input rows runs: ``"fp32"`` (dequantized weights),
        ``"default"`` (the quantized engine's own: fbgemm on x86) or ``"onednn"``."""
        small = self.in_features * self.out_features < FP32_UNDER_WEIGHTS
        if self.compute == "fp32" or (rows <= FP32_UP_TO_ROWS and small):
            return "fp32"
        return "onednn" if ONEDNN_FROM_ROWS is not None and rows >= ONEDNN_FROM_ROWS else "default"

    def _kernel(self, kernel: str):
        """The packed int8 matrix (or the dequantized fp32 one) for ``kernel``, built on first use and
        rebuilt whenever a tensor changes (reloaded, written in place, replaced) or ``compute`` does."""
        key = (self.compute, self._tensors_key())
        if self._packed is None or self._packed[0] != key:
            self._packed = (key, {})
        kernels = self._packed[1]
        if kernel not in kernels:
            kernels[kernel] = self._pack(kernel)
        return kernels[kernel]

    def _tensors_key(self) -> tuple:
        """Changes whenever the weight, scale or bias is reloaded, replaced or written in place."""
        buffers = self._buffers  # not self.weight: nn.Module's attribute fallback is slow on every call
        return _identity(buffers["weight"]), _identity(buffers["scale"]), _identity(buffers["bias"])

    @staticmethod
    def project_together(modules: tuple[Int8Linear, ...], x: Tensor) -> list[Tensor]:
        """The outputs of several int8 Linears of the same input (Q, K and V) from one GEMM.

        The input is quantized once (per tensor or per row), exactly as each Linear would alone,
        and weight rows keep their own scales, so the outputs are the separate calls' outputs;
        the saving is per call (about half the time of three calls for one sentence). The
        stacked matrix is packed on first use and again whenever a weight changes."""
        first = modules[0]
        if (
            any(m.compute != first.compute or m.in_features != first.in_features for m in modules)
            or first.kernel_for(first._rows(x)) == "fp32"
        ):  # fp32 compute included
            return [m(x) for m in modules]
        key = tuple((id(m), m.compute, m._tensors_key()) for m in modules)
        cached = getattr(first, "_together", None)
        if cached is None or cached[0] != key:
            stacked = Int8Linear(first.in_features, sum(m.out_features for m in modules), compute=first.compute)
            stacked.weight = torch.cat([m.weight for m in modules])
            stacked.scale = torch.cat([m.scale for m in modules])
            stacked.bias = torch.cat(
                [m.bias if m.bias is not None else m.scale.new_zeros(m.out_features) for m in modules]
            )
            first._together = cached = (key, stacked)
        return list(cached[1](x).split([m.out_features for m in modules], dim=-1))

    def dequantized(self) -> Tensor:  # (out, in) fp32
        return self.weight.float() * self.scale[:, None]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_packed"] = None  # the packed caches are C++ objects: rebuild them instead of copying
        state.pop("_together", None)
        return state

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"compute={self.compute}"
        )


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
        self._table = None  # (key, dequantized fp32 table), rebuilt when the int8 rows change

    @classmethod
    def from_embedding(cls, embedding: nn.Module) -> Int8Embedding:
        q = cls(*embedding.weight.shape)
        q.weight, q.scale = quantize_rows(embedding.weight)
        return q

    def forward(self, ids: Tensor) -> Tensor:  # (B, T) -> (B, T, d)
        key = (_identity(self.weight), _identity(self.scale))
        if self._table is None or self._table[0] != key:
            self._table = (key, self.weight.float() * self.scale[:, None])  # (V, d)
        return self.hook_out(F.embedding(ids, self._table[1]))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_table"] = None
        return state

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]
