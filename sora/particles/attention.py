"""Multi-head attention whose every head is addressable (``layers.3.attn.head.5``).

Q, K, V and the output projection are plain Linears laid out head-major: rows
``h*dh:(h+1)*dh`` of Q/K/V and the same columns of the output projection belong to head h. So a
head is switched off by its gate (``head_gate[h] = 0``) and removed for real by slicing those
rows and columns (sora.compress). A layer may have zero heads: it then adds only the output
bias, which is zero in a model built that way.

Two paths give the same outputs (within float error): PyTorch's fused SDPA kernel, and an explicit
softmax(QK^T/sqrt(dh))V that exposes the attention pattern at ``hook_pattern``. The explicit path
runs when weights are asked for, when a hook listens to the pattern, with adaptive span, or when
``explicit`` is set; and at CPU inference for the shapes where it was measured faster (``EXPLICIT_KEYS``).

Hook points, in the order they fire (shapes where each is declared): the input; the queries, keys
and values split into heads, Q and K both *after* the rotary rotation (what the scores are made
of: ``hook_pattern = softmax(hook_q @ hook_k^T / sqrt(dh) + mask)``), K and V after the KV cache
has grown by this call's positions; the pattern; each head's output, positions first (heads
side by side, as the output projection reads them); the output.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.particles.adaptive_span import AdaptiveSpan
from sora.particles.hookpoint import HookPoint
from sora.particles.kv_cache import KVCache
from sora.particles.linear import GateCheck, is_plain_linear, linear, project
from sora.particles.masks import attention_mask
from sora.particles.packing import Packing
from sora.particles.position import Rotary

# Key lengths S for which the explicit path beat SDPA's CPU flash kernel at inference, for more than one query:
# SDPA took 1.4-2.9x as long at S = 24 and 28 in every case measured (12 heads of 32 and 4 of 64, batch 1, 8 and
# 32, 1 thread, best of 9: bench/results/attention_kernels.json); at 20 and 32-40 either won; from 48 up, and for
# a decoding step's single query, SDPA was as fast or faster. End to end on MiniLM the rule is within noise
# (attention is about 5% of its time).
EXPLICIT_KEYS = (21, 31)


def explicit_wins(queries: int, keys: int, device: torch.device) -> bool:
    """Whether the explicit path is the faster kernel for this shape (at inference; training keeps SDPA's)."""
    low, high = EXPLICIT_KEYS
    # inference mode first: an export traces under no_grad, where sizes are symbols a comparison would pin
    return device.type == "cpu" and torch.is_inference_mode_enabled() and queries > 1 and low <= keys <= high


class MultiHeadAttention(nn.Module):
    kind = "attention"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        head_dim: int,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        rotary: Rotary | None = None,
        adaptive_span: AdaptiveSpan | None = None,
        cross: bool = False,
    ):
        super().__init__()
        self.n_heads, self.head_dim, self.cross = n_heads, head_dim, cross
        inner = n_heads * head_dim
        self.q_proj = linear(d_model, inner, bias=bias)
        self.k_proj = linear(d_model, inner, bias=bias)
        self.v_proj = linear(d_model, inner, bias=bias)
        self.out_proj = linear(inner, d_model, bias=bias)
        if n_heads == 0 and bias:
            nn.init.zeros_(self.out_proj.bias)
        self.register_buffer("head_gate", torch.ones(n_heads))  # (H,) 0 switches a head off
        self._gate_check = GateCheck()  # multiply by the gate only when a head is off
        self.dropout = dropout
        self.rotary = rotary
        self.adaptive_span = adaptive_span
        self.explicit = False
        # T: query positions; S: key positions (cross: the memory's; self: T, or cache + T while decoding).
        # With zero heads only hook_in and hook_out fire.
        self.hook_in = HookPoint()  # (B, T, d) the queries' input (self-attention: the keys' and values' too)
        self.hook_q = HookPoint()  # (B, H, T, dh) queries, after the rotary rotation
        self.hook_k = HookPoint()  # (B, H, S, dh) keys, after the rotary rotation, cached ones included
        self.hook_v = HookPoint()  # (B, H, S, dh) values, cached ones included
        self.hook_pattern = HookPoint()  # (B, H, T, S) softmax(q k^T / sqrt(dh) + mask); explicit path only
        self.hook_z = HookPoint()  # (B, T, H, dh) each head's output, gated (formed only when hooked or needed)
        self.hook_out = HookPoint()  # (B, T, d)

    def forward(
        self,
        x: Tensor,  # (B, T, d) queries (and keys/values for self-attention)
        memory: Tensor | None = None,  # (B, S, d) keys/values for cross-attention
        mask: Tensor | None = None,  # additive (B or 1, 1, T, S), see sora.particles.masks
        cache: KVCache | None = None,
        need_weights: bool = False,
        is_causal: bool = False,  # causal with no mask tensor: SDPA's fused causal kernel
        queries: int | None = None,  # self-attention: only the first positions ask; all are keys and values
        packing: Packing | None = None,  # x is (1, N, d), the real positions of a (B', T') batch (particles.packing)
    ) -> tuple[Tensor, Tensor | None]:
        x = self.hook_in(x)
        B, T, _ = x.shape
        if queries is not None:  # the output is (B, queries, d): what a CLS-pooled head reads of the last block
            T = queries
            mask = mask[:, :, :queries] if mask is not None and mask.shape[2] > 1 else mask
        if self.n_heads == 0:
            if cache is not None and not self.cross:
                cache.advance(T)  # later layers' positions still count from here
            return self.hook_out(self.out_proj(x.new_zeros(B, T, 0))), None
        offset = cache.length if cache is not None and not self.cross else 0
        if self.cross:
            q = self._split(self.q_proj(x))  # (B, H, T, dh)
            if cache is not None and cache.k is not None:
                k, v = cache.k, cache.v  # the source does not change while decoding
            else:
                k, v = self._split(self.k_proj(memory)), self._split(self.v_proj(memory))  # (B, H, S, dh)
                if cache is not None:
                    cache.k, cache.v = k, v
        else:
            projected = project(x, self.q_proj, self.k_proj, self.v_proj)  # (B, T, H*dh) each
            if packing is not None:
                projected = [packing.unpack(t) for t in projected]  # (B', T', H*dh): sequences apart again
            q, k, v = (self._split(t) for t in projected)  # (B, H, T, dh)
            if self.rotary is not None:
                q, k = self.rotary(q, offset), self.rotary(k, offset)
            if cache is not None:
                k, v = cache.extend(k, v)  # (B, H, cache + T, dh)
            if queries is not None:
                q = q[:, :, :queries]  # (B, H, queries, dh)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)

        dropout = self.dropout if self.training else 0.0
        weights = None
        if (
            need_weights
            or self.explicit
            or self.adaptive_span is not None
            or self.hook_pattern.active
            or explicit_wins(q.shape[2], k.shape[2], q.device)
        ):
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, T, S)
            if is_causal and mask is None:
                mask = attention_mask(
                    None, q_len=T, k_len=k.shape[2], causal=True, dtype=scores.dtype, device=scores.device
                )
            if mask is not None:
                scores = scores + mask
            weights = scores.softmax(dim=-1)
            if self.adaptive_span is not None:
                weights = self.adaptive_span.apply(weights)
            weights = self.hook_pattern(weights)
            z = F.dropout(weights, dropout, self.training) @ v  # (B, H, T, dh)
        else:
            z = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal and mask is None
            )
        z = z.transpose(1, 2)  # (B, T, H, dh)
        if packing is not None:  # back to the real positions: (1, N, H, dh)
            z = packing.pack(z.reshape(*z.shape[:2], -1)).view(B, T, self.n_heads, self.head_dim)
        gated = self._gate_check(self.head_gate)
        if gated and not self.hook_z.active and is_plain_linear(self.out_proj):
            # the same product, cheaper: gate the projection's H*dh columns, not every position's z
            gate = self.head_gate.repeat_interleave(self.head_dim)  # (H*dh,)
            return self.hook_out(
                F.linear(z.reshape(B, T, -1), self.out_proj.weight * gate, self.out_proj.bias)
            ), weights
        if self.hook_z.active or gated:
            z = self.hook_z(z * self.head_gate.view(1, 1, -1, 1))
        out = self.out_proj(z.reshape(B, T, self.n_heads * self.head_dim))  # (B, T, d)
        return self.hook_out(out), weights

    def _split(self, x: Tensor) -> Tensor:  # (B, T, H*dh) -> (B, H, T, dh)
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
