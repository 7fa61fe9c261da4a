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
from sora.particles.linear import inference_layout
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
        self.inference_layout_on = False  # whether the Linears' weights are stored for inference (particles.linear)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            self.set_inference_layout(False)
        return self

    def set_inference_layout(self, on: bool) -> None:
        """Store the Linears' weights for inference (column-major) or as usual (sora.particles.linear)."""
        if on != self.inference_layout_on:
            inference_layout(self, on=on)
            self.inference_layout_on = on

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
        if not self.inference_layout_on and not self.training and torch.is_inference_mode_enabled():
            self.set_inference_layout(True)  # once, the first time inference runs
        if valid is None and self.embed.tokens is not None and not self.causal:
            valid = inputs != self.config.pad_id
        elif valid is not None and self.config.input == "audio":
            valid = self.embed.patches.token_mask(valid)
        x = self.embed(inputs, offset, segments)  # (B, T, d)
        if cache is not None and valid is not None and offset:
            raise ValueError("incremental decoding takes no padding mask after the first step")
        real = self._real_fraction(valid)
        key_valid = None if real == 1.0 else valid  # no padding at inference: no mask to add (SDPA runs faster)
        mask, is_causal = self._self_mask(key_valid, x, offset)
        memory_mask = None
        if memory is not None and memory_valid is not None:
            memory_mask = attention_mask(
                memory_valid, q_len=x.shape[1], k_len=memory.shape[1], causal=False, dtype=x.dtype
            )
        last = len(self.layers) - 1
        packing = Packing.of(valid) if self._packs(real, cache, memory) else None
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

    def _self_mask(self, key_valid: Tensor | None, x: Tensor, offset: int) -> tuple[Tensor | None, bool]:
        """The additive self-attention mask (B or 1, 1, T, offset + T), or None with ``is_causal`` True for a
        purely causal square one (SDPA's faster kernel takes it as a flag, not a tensor). A decoding step's one
        query, with no padding, sees every key: no mask at all (building an all-zero one cost a few small ops a
        token); only in inference mode, as an export traces T as a symbol."""
        T = x.shape[1]
        is_causal = bool(self.causal and key_valid is None and offset == 0)  # a plain bool when traced for export
        if is_causal or (self.causal and key_valid is None and torch.is_inference_mode_enabled() and T == 1):
            return None, is_causal
        mask = attention_mask(key_valid, q_len=T, k_len=offset + T, causal=self.causal, dtype=x.dtype, device=x.device)
        return mask, is_causal

    def _real_fraction(self, valid: Tensor | None) -> float | None:
        """The fraction of real positions in a bidirectional stack's batch, read only where work may be skipped:
        it is a data-dependent step that a traced export cannot take (it would bake one batch's answer in), and
        that a GPU would wait for: training reads it on the CPU only (a step would sync on it otherwise)."""
        if valid is None or self.causal or not self._mode_skips():
            return None
        if self.training and valid.device.type != "cpu":
            return None
        return float(valid.float().mean())

    def _packs(self, real: float | None, cache, memory) -> bool:
        """Whether to run the blocks on the real positions alone (sora.particles.packing): for a bidirectional
        stack whose batch is at least PACK_FROM padding, when work may be skipped at all."""
        if real is None or real > 1 - PACK_FROM or cache is not None or memory is not None:
            return False
        return self.may_skip_work(self.layers)

    def _mode_skips(self) -> bool:
        """Inference (eval, inference mode) and training (train mode, gradients on) may skip work nobody reads;
        a plain ``no_grad`` pass (evaluation, analysis, an export's trace) gets the usual shapes."""
        if self.training:
            return torch.is_grad_enabled()
        return torch.is_inference_mode_enabled()

    def may_skip_work(self, blocks: nn.Module) -> bool:
        """Whether a pass may leave out work in ``blocks`` (padding, positions nobody reads): at inference or in
        training (the same outputs and gradients), while no hook point or block is hooked (hooks see the usual
        shapes: analysis, layer distillation) and no adaptive span shapes the patterns."""
        if not self._mode_skips():
            return False
        return not any(_listened(m) or getattr(m, "adaptive_span", None) is not None for m in blocks.modules())

    def new_cache(self, capacity: int | None = None) -> list[LayerCache]:
        """Empty caches, one per block; ``capacity`` (positions) preallocates their buffers (KVCache)."""
        return [LayerCache.preallocated(capacity) for _ in self.layers]


def _listened(module: nn.Module) -> bool:
    """A hook point something listens to, or a hooked block (layer distillation reads blocks' outputs)."""
    if isinstance(module, HookPoint):
        return module.active
    return isinstance(module, Block) and bool(module._forward_hooks or module._forward_pre_hooks)
