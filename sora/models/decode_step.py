"""One decoding step of a decoder LM as plain tensor ops: what greedy and sampled generation run per token.

A step reads one token per row. Through the particles it makes about fifteen module calls a block (two norms,
attention and its four projections, the feed-forward and its two, the block itself, their hook points), and
at batch 1 those calls, not the arithmetic, were most of the step: on a GPT-2-shaped decoder (4 layers, d=256)
the same arithmetic with no module in between generated 1.4x faster (bench/inference_vs_hf.py).
``DecodeStep.of(model)`` reads every block's weights once per generation (views of the particles' own tensors;
a switched-off head or neuron folded into a copy of the projection it gates) and runs the step on (B, d) rows.

It is the particles' arithmetic, not a second model: the same kernels in the same order on the same weights,
and the KV cache is the particles' own (``KVCache``), so a generation may switch between the two paths at any
step (the prompt and a slid window go through the particles). Where a model needs what the particles do beyond
that arithmetic (anything hooked, int8 or adapter projections, adaptive span, cross-attention), ``of`` returns
None and generation takes the particles' path. Q, K and V as one concatenated GEMM measured no faster (0.92-1.01x
end to end) and would copy the weights: they stay three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.particles import Block, LayerCache
from sora.particles.feedforward import ACTIVATIONS
from sora.particles.hookpoint import _has_any_global_hook
from sora.particles.linear import GateCheck, is_plain_linear
from sora.particles.norm import LayerNorm, RMSNorm

Norm = Callable[[Tensor], Tensor]


@dataclass
class _Attention:
    projections: list[tuple[Tensor, Tensor | None]]  # Q, K, V: weight (d, H*dh) transposed for mm, bias (H*dh,)
    out: Tensor  # (H*dh, d) the output projection, transposed, its gated-off heads' rows zero
    out_bias: Tensor | None  # (d,)
    heads: int
    head_dim: int
    rotary: nn.Module | None


@dataclass
class _FeedForward:
    fc_in: Tensor  # (d, F)
    in_bias: Tensor | None
    fc_gate: Tensor | None  # (d, F) SwiGLU's gate branch
    gate_bias: Tensor | None
    fc_out: Tensor  # (F, d), masked-off neurons' rows zero
    out_bias: Tensor | None
    activation: Callable[[Tensor], Tensor]


@dataclass
class _Block:
    pre_norm: bool
    attn_norm: Norm
    attn: _Attention | None  # None: a layer pruned to no heads (adds its output bias only)
    attn_bias: Tensor | None  # that layer's output bias
    ffn_norm: Norm
    ffn: _FeedForward


class DecodeStep:
    """``step(tokens, cache)``: the next-token logits (B, V) for one new token per row (B,), extending ``cache``."""

    def __init__(self, model: nn.Module, blocks: list[_Block]):
        self.blocks = blocks
        embed = model.embed
        self.tokens, self.position = embed.tokens.weight, embed.position
        self.embed_norm = _norm(embed.norm) if embed.norm is not None else None
        self.final_norm = _norm(model.final_norm) if model.final_norm is not None else None
        self.head_weight, self.head_bias = model.head.proj.weight, model.head.proj.bias

    @classmethod
    def of(cls, model: nn.Module) -> DecodeStep | None:
        """The step for ``model`` as its weights are now, or None where only the particles' path is exact."""
        if not _plain(model):
            return None
        if torch.is_inference_mode_enabled():
            model.set_inference_layout(True)  # the weights read below in the layout inference runs fastest on
        return cls(model, [_block(block) for block in model.layers])

    def __call__(self, tokens: Tensor, cache: list[LayerCache]) -> Tensor:  # (B,) -> (B, V)
        offset = cache[0].self_attn.length
        x = F.embedding(tokens, self.tokens)  # (B, d)
        if self.position is not None:
            x = x + self.position.forward(1, offset)  # (1, d): its hook point is idle (checked in `of`)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        for block, layer_cache in zip(self.blocks, cache):
            x = _run_block(block, x, layer_cache, offset)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return F.linear(x, self.head_weight, self.head_bias)  # (B, V)


def _run_block(block: _Block, x: Tensor, cache: LayerCache, offset: int) -> Tensor:  # (B, d) -> (B, d)
    if block.pre_norm:
        x = x + _attend(block, block.attn_norm(x), cache, offset)
        return x + _feed_forward(block.ffn, block.ffn_norm(x))
    x = block.attn_norm(x + _attend(block, x, cache, offset))
    return block.ffn_norm(x + _feed_forward(block.ffn, x))


def _attend(block: _Block, h: Tensor, cache: LayerCache, offset: int) -> Tensor:  # (B, d) -> (B, d)
    attn = block.attn
    if attn is None:  # no heads: the cache still counts the position
        cache.self_attn.advance(1)
        return h.new_zeros(h.shape) if block.attn_bias is None else block.attn_bias.expand_as(h)
    B, H, dh = h.shape[0], attn.heads, attn.head_dim
    q, k, v = (_affine(h, weight, bias).view(B, H, 1, dh) for weight, bias in attn.projections)  # (B, H, 1, dh)
    if attn.rotary is not None:
        q, k = attn.rotary.forward(q, offset), attn.rotary.forward(k, offset)
    k, v = cache.self_attn.extend(k, v)  # (B, H, S, dh)
    z = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, dh): one query sees every key, no mask
    return _affine(z.reshape(B, H * dh), attn.out, attn.out_bias)


def _feed_forward(ffn: _FeedForward, h: Tensor) -> Tensor:  # (B, d) -> (B, d)
    pre = _affine(h, ffn.fc_in, ffn.in_bias)  # (B, F)
    if ffn.fc_gate is not None:
        hidden = F.silu(_affine(h, ffn.fc_gate, ffn.gate_bias)) * pre
    else:
        hidden = ffn.activation(pre)
    return _affine(hidden, ffn.fc_out, ffn.out_bias)


def _affine(x: Tensor, weight_t: Tensor, bias: Tensor | None) -> Tensor:  # (B, in) @ (in, out) + (out,)
    return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


def _plain(model: nn.Module) -> bool:
    """Whether the step is exactly the particles' arithmetic for ``model``: an evaluated decoder LM with nothing
    hooked (a hook must see its activation), plain float Linears (not int8, LoRA or adapters), the particles'
    own norms and activations, no adaptive span or cross-attention, and an unhooked embedding."""
    if model.training or _has_any_global_hook() or model.embed.tokens is None or model.embed.segment is not None:
        return False
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return False
    if not is_plain_linear(model.head.proj) or any(not _plain_block(b) for b in model.layers):
        return False
    norms = [model.final_norm, model.embed.norm]
    return all(n is None or type(n) in (LayerNorm, RMSNorm) for n in norms)


def _plain_block(block: nn.Module) -> bool:
    if type(block) is not Block or block.cross_attn is not None:
        return False
    attn, ffn = block.attn, block.ffn
    if attn.adaptive_span is not None or attn.explicit or ffn.activation not in ACTIVATIONS:
        return False
    linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, ffn.fc_in, ffn.fc_out]
    linears += [ffn.fc_gate] if ffn.fc_gate is not None else []
    norms = [block.attn_norm, block.ffn_norm]
    return all(is_plain_linear(m) for m in linears) and all(type(n) in (LayerNorm, RMSNorm) for n in norms)


def _block(block: Block) -> _Block:
    attn, ffn = block.attn, block.ffn
    return _Block(
        pre_norm=block.pre_norm,
        attn_norm=_norm(block.attn_norm),
        attn=_attention(attn) if attn.n_heads else None,
        attn_bias=attn.out_proj.bias,
        ffn_norm=_norm(block.ffn_norm),
        ffn=_feed_forward_weights(ffn),
    )


def _attention(attn: nn.Module) -> _Attention:
    out = attn.out_proj.weight
    if GateCheck()(attn.head_gate):  # a head switched off: its columns of the output projection are zero
        out = out * attn.head_gate.repeat_interleave(attn.head_dim)
    return _Attention(
        projections=[(p.weight.t(), p.bias) for p in (attn.q_proj, attn.k_proj, attn.v_proj)],
        out=out.t(),
        out_bias=attn.out_proj.bias,
        heads=attn.n_heads,
        head_dim=attn.head_dim,
        rotary=attn.rotary,
    )


def _feed_forward_weights(ffn: nn.Module) -> _FeedForward:
    out = ffn.fc_out.weight
    if GateCheck()(ffn.neuron_mask):
        out = out * ffn.neuron_mask
    gate = ffn.fc_gate
    return _FeedForward(
        fc_in=ffn.fc_in.weight.t(),
        in_bias=ffn.fc_in.bias,
        fc_gate=gate.weight.t() if gate is not None else None,
        gate_bias=gate.bias if gate is not None else None,
        fc_out=out.t(),
        out_bias=ffn.fc_out.bias,
        activation=ACTIVATIONS[ffn.activation],
    )


def _norm(norm: nn.Module) -> Norm:
    """The norm's function of (B, d) rows, with its weights bound (its hook point is idle: checked in ``of``)."""
    shape, weight, eps = norm.normalized_shape, norm.weight, norm.eps
    if type(norm) is RMSNorm:
        return lambda x: F.rms_norm(x, shape, weight, eps)
    bias = norm.bias
    return lambda x: F.layer_norm(x, shape, weight, bias, eps)
