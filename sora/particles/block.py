"""A residual Transformer block: self-attention, optional cross-attention, feed-forward.

Each sub-layer is wrapped in a residual connection with its own norm, either before the
sub-layer (pre-norm: ``x + f(norm(x))``, stable for deep stacks) or after the sum (post-norm:
``norm(x + f(x))``, the original Transformer and BERT).
"""

from typing import Callable

from torch import Tensor, nn

from sora.particles.attention import MultiHeadAttention
from sora.particles.feedforward import FeedForward
from sora.particles.hookpoint import HookPoint
from sora.particles.kv_cache import LayerCache
from sora.particles.norm import make_norm
from sora.particles.packing import Packing


class Block(nn.Module):
    kind = "block"

    def __init__(
        self,
        d_model: int,
        attn: MultiHeadAttention,
        ffn: FeedForward,
        *,
        cross_attn: MultiHeadAttention | None = None,
        norm: str = "layernorm",
        norm_eps: float = 1e-5,
        norm_position: str = "pre",
        dropout: float = 0.0,
    ):
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position must be 'pre' or 'post', got {norm_position!r}")
        self.pre_norm = norm_position == "pre"
        self.attn_norm, self.attn = make_norm(norm, d_model, norm_eps), attn
        self.cross_norm = make_norm(norm, d_model, norm_eps) if cross_attn is not None else None
        self.cross_attn = cross_attn
        self.ffn_norm, self.ffn = make_norm(norm, d_model, norm_eps), ffn
        self.dropout = nn.Dropout(dropout)
        self.hook_resid_pre = HookPoint()  # (B, T, d) the block's input
        self.hook_resid_mid = HookPoint()  # (B, T, d) after attention (and cross-attention), before the ffn
        self.hook_resid_post = HookPoint()  # (B, T, d) the block's output

    def forward(
        self,
        x: Tensor,  # (B, T, d)
        mask: Tensor | None = None,  # additive (B or 1, 1, T, T)
        *,
        memory: Tensor | None = None,  # (B, S, d) encoder output, for cross-attention
        memory_mask: Tensor | None = None,  # additive (B, 1, 1, S)
        cache: LayerCache | None = None,
        is_causal: bool = False,  # mask is None and attention is causal (see MultiHeadAttention)
        keep: int | None = None,  # only the first positions are read after this block: (B, keep, d) out
        packing: Packing | None = None,  # x is (1, N, d): a batch's real positions (sora.particles.packing)
    ) -> Tensor:
        x = self.hook_resid_pre(x)
        self_cache = cache.self_attn if cache is not None else None

        def attend(h: Tensor) -> Tensor:
            return self.attn(h, mask=mask, cache=self_cache, is_causal=is_causal, queries=keep, packing=packing)[0]

        x = self._residual(x, self.attn_norm, attend, keep)
        if self.cross_attn is not None:
            cross = cache.cross_attn if cache is not None else None
            x = self._residual(x, self.cross_norm, lambda h: self.cross_attn(h, memory, memory_mask, cross)[0])
        x = self.hook_resid_mid(x)
        x = self._residual(x, self.ffn_norm, self.ffn)
        return self.hook_resid_post(x)

    def _residual(
        self, x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], Tensor], keep: int | None = None
    ) -> Tensor:
        """``keep``: the sub-layer reads every position but answers for the first ``keep`` (attention with
        fewer queries), and the residual stream goes on with those alone."""
        kept = x if keep is None else x[:, :keep]
        if self.pre_norm:
            return kept + self._dropped(sublayer(norm(x)))
        return norm(kept + self._dropped(sublayer(x)))

    def _dropped(self, h: Tensor) -> Tensor:
        """Dropout while training; at inference not even the module call (a few per block, every token)."""
        return self.dropout(h) if self.training else h
