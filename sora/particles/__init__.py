"""Particles: the elementary units every Sora model is composed of, one small file each."""

from sora.particles.adaptive_span import AdaptiveSpan
from sora.particles.attention import MultiHeadAttention
from sora.particles.block import Block
from sora.particles.bottleneck import AdaptedLinear, BottleneckAdapter
from sora.particles.embedding import TokenEmbedding
from sora.particles.feedforward import FeedForward
from sora.particles.heads import ClassifierHead, LMHead, SpanHead, TokenClassifierHead
from sora.particles.hookpoint import HookPoint
from sora.particles.int8 import Int8Embedding, Int8Linear
from sora.particles.kv_cache import KVCache, LayerCache
from sora.particles.lora import LoRALinear
from sora.particles.masks import attention_mask
from sora.particles.norm import make_norm
from sora.particles.patches import AudioPatchEmbedding, ImagePatchEmbedding
from sora.particles.position import LearnedPosition, Rotary, SinusoidalPosition
from sora.particles.segment import SegmentEmbedding

__all__ = [
    "AdaptedLinear",
    "AdaptiveSpan",
    "AudioPatchEmbedding",
    "Block",
    "BottleneckAdapter",
    "ClassifierHead",
    "FeedForward",
    "HookPoint",
    "ImagePatchEmbedding",
    "Int8Embedding",
    "Int8Linear",
    "KVCache",
    "LMHead",
    "LayerCache",
    "LearnedPosition",
    "LoRALinear",
    "MultiHeadAttention",
    "Rotary",
    "SegmentEmbedding",
    "SinusoidalPosition",
    "SpanHead",
    "TokenClassifierHead",
    "TokenEmbedding",
    "attention_mask",
    "make_norm",
]
