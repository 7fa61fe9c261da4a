"""A stack: the input embedder, a list of blocks and a final norm.

Every assembly is one stack plus a head (encoder classifier, decoder LM) or two stacks plus a
head (seq2seq). Per-layer head counts and FFN widths come from the config, so a pruned model is
rebuilt with exactly its remaining particles.
"""

import torch
from torch import Tensor, nn

from sora.models.config import ModelConfig, StackConfig
from sora.models.embedder import Embedder
from sora.particles import (
    AdaptiveSpan,
    Block,
    FeedForward,
    HookPoint,
    LayerCache,
    MultiHeadAttention,
    Rotary,
    attention_mask,
    make_norm,
)
from sora.particles.packing import Packing

PACK_FROM = 0.1  # the padding fraction from which packing pays (gather and scatter cost a little)


def build_blocks(config: ModelConfig, stack: StackConfig, *, cross: bool = False) -> nn.ModuleList:
    rotary = Rotary(config.head_dim, config.max_len, config.rope_base) if config.position == "rotary" else None
    blocks = []
    for n_heads, d_ff, n_cross in zip(stack.heads(), stack.widths(), stack.cross()):
        span = config.adaptive_span
        attn = MultiHeadAttention(
            config.d_model,
            n_heads,
            config.head_dim,
            bias=config.bias,
            dropout=config.attn_dropout,
            rotary=rotary,
            adaptive_span=AdaptiveSpan(n_heads, span.max_span, span.ramp, span.init) if span else None,
        )
        cross_attn = None
        if cross:
            cross_attn = MultiHeadAttention(
                config.d_model, n_cross, config.head_dim, bias=config.bias, dropout=config.attn_dropout, cross=True
            )
        ffn = FeedForward(config.d_model, d_ff, config.activation, bias=config.bias, dropout=config.dropout)
        blocks.append(
            Block(
                config.d_model,
                attn,
                ffn,
                cross_attn=cross_attn,
                norm=config.norm,
                norm_eps=config.norm_eps,
                norm_position=config.norm_position,
                dropout=config.dropout,
            )
        )
    return nn.ModuleList(blocks)


class Stack(nn.Module):
    """Embedder -> blocks -> final norm (pre-norm stacks only: post-norm blocks end normalised)."""

    kind = "stack"

    def __init__(self, config: ModelConfig, stack: StackConfig, *, causal: bool = False, cross: bool = False):
        super().__init__()
        self.config, self.causal = config, causal
        self.embed = Embedder(config)
        self.layers = build_blocks(config, stack, cross=cross)
        pre = config.norm_position == "pre"
        self.final_norm = make_norm(config.norm, config.d_model, config.norm_eps) if pre else None

    def run_stack(
        self,
        inputs: Tensor,  # ids (B, T), images (B, C, H, W) or mels (B, n_mels, F)
        valid: Tensor | None = None,  # (B, T) True at real tokens (audio: (B, F) frames)
        *,
        memory: Tensor | None = None,  # (B, S, d) for cross-attention
        memory_valid: Tensor | None = None,  # (B, S)
        cache: list[LayerCache] | None = None,
        keep_last: int | None = None,  # the last block answers for the first positions only (B, keep_last, d)
        segments: Tensor | None = None,  # (B, T) segment ids of text pairs (0: first text, 1: second)
    ) -> tuple[Tensor, Tensor | None]:  # hidden (B, T, d), token validity (B, T) or None
        offset = cache[0].self_attn.length if cache else 0  # every layer counts its positions, headless ones too
        if valid is None and self.embed.tokens is not None and not self.causal:
            valid = inputs != self.config.pad_id
        elif valid is not None and self.config.input == "audio":
            valid = self.embed.patches.token_mask(valid)
        x = self.embed(inputs, offset, segments)  # (B, T, d)
        T = x.shape[1]
        key_valid = valid
        if cache is not None and valid is not None and offset:
            raise ValueError("incremental decoding takes no padding mask after the first step")
        # A purely causal square mask goes to SDPA as is_causal (its faster kernel), not as a tensor.
        is_causal = bool(self.causal and key_valid is None and offset == 0)  # a plain bool when traced for export
        mask = (
            None
            if is_causal
            else attention_mask(
                key_valid, q_len=T, k_len=offset + T, causal=self.causal, dtype=x.dtype, device=x.device
            )
        )
        memory_mask = None
        if memory is not None and memory_valid is not None:
            memory_mask = attention_mask(memory_valid, q_len=T, k_len=memory.shape[1], causal=False, dtype=x.dtype)
        last = len(self.layers) - 1
        packing = Packing.of(valid) if self._packs(valid, cache, memory) else None
        if packing is not None:
            x = packing.pack(x)  # (1, N, d): the real positions only
        for i, block in enumerate(self.layers):
            if packing is not None and i == last and keep_last is not None:
                x, packing = packing.unpack(x), None  # the last block reads every position, answers for a few
            x = block(
                x,
                mask,
                memory=memory,
                memory_mask=memory_mask,
                cache=cache[i] if cache else None,
                is_causal=is_causal,
                keep=keep_last if i == last else None,
                packing=packing,
            )
        if packing is not None:
            x = packing.unpack(x)  # (B, T, d), zeros at the padding
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, valid

    def _packs(self, valid: Tensor | None, cache, memory) -> bool:
        """Whether to run the blocks on the real positions alone (sora.particles.packing): for a bidirectional
        stack whose batch is at least PACK_FROM padding, when inference may skip work at all."""
        if valid is None or self.causal or cache is not None or memory is not None:
            return False
        # the mode first: reading the padding fraction is a data-dependent step a traced export cannot take
        return self.may_skip_work(self.layers) and float(valid.float().mean()) <= 1 - PACK_FROM

    def may_skip_work(self, blocks: nn.Module) -> bool:
        """Whether inference may leave out work in ``blocks`` (padding, positions nobody reads): only in
        inference mode, while no hook point listens (hooks see the usual shapes) and no adaptive span shapes
        the patterns."""
        if self.training or not torch.is_inference_mode_enabled():
            return False
        return not any(
            (isinstance(m, HookPoint) and m.active) or getattr(m, "adaptive_span", None) is not None
            for m in blocks.modules()
        )

    def new_cache(self) -> list[LayerCache]:
        return [LayerCache() for _ in self.layers]
