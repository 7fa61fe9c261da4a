"""The model config: the whole architecture, typed, and saved as ``config.json`` in a model folder.

Per-layer head counts and FFN widths may differ (a pruned model records each layer's sizes), and
either may be zero. ``quantization`` records how a quantized model's weights are stored, so the
folder alone is enough to rebuild it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from sora.configio import StrictModel

Arch = Literal["encoder_classifier", "token_classifier", "decoder_lm", "seq2seq", "encoder", "span_extractor"]


class StackConfig(StrictModel):
    """A stack of blocks. A single number applies to every layer; a list gives each layer's own."""

    n_layers: int = Field(2, ge=0, description="number of blocks")
    n_heads: int | list[int] = Field(4, description="attention heads per layer")
    d_ff: int | list[int] = Field(512, description="feed-forward width per layer")
    cross_heads: int | list[int] | None = Field(None, description="cross-attention heads (seq2seq decoder)")

    @model_validator(mode="after")
    def _per_layer_lists_match(self) -> StackConfig:
        for key in ("n_heads", "d_ff", "cross_heads"):
            value = getattr(self, key)
            values = value if isinstance(value, list) else [value] if value is not None else []
            if isinstance(value, list) and len(value) != self.n_layers:
                raise ValueError(f"{key} lists {len(value)} layers but n_layers is {self.n_layers}")
            if any(v < 0 for v in values):
                raise ValueError(f"{key} must be >= 0, got {value}")
        return self

    def heads(self) -> list[int]:
        return _per_layer(self.n_heads, self.n_layers)

    def widths(self) -> list[int]:
        return _per_layer(self.d_ff, self.n_layers)

    def cross(self) -> list[int]:
        return _per_layer(self.cross_heads if self.cross_heads is not None else 0, self.n_layers)


def _per_layer(value: int | list[int], n: int) -> list[int]:
    return list(value) if isinstance(value, list) else [value] * n


class ImageInput(StrictModel):
    size: int = Field(28, gt=0, description="images are size x size pixels")
    channels: int = Field(1, gt=0)
    patch: int = Field(4, gt=0, description="patch side in pixels; tokens = (size/patch)^2")
    stem: Literal["patch", "conv"] = Field(
        "patch", description="patch: one projection per patch (ViT); conv: overlapping stride-2 convolutions"
    )

    @model_validator(mode="after")
    def _patch_divides(self) -> ImageInput:
        if self.size % self.patch:
            raise ValueError(f"patch {self.patch} does not divide image size {self.size}")
        if self.stem == "conv" and (self.patch < 2 or self.patch & (self.patch - 1)):
            raise ValueError(f"stem conv needs a patch that is a power of two, at least 2, got {self.patch}")
        return self


class AudioInput(StrictModel):
    n_mels: int = Field(40, gt=0, description="mel bands of the log-mel spectrogram")
    patch_frames: int = Field(4, gt=0, description="spectrogram frames per token")
    stem: Literal["patch", "conv"] = Field(
        "patch", description="patch: one projection per frame group; conv: stride-2 convolutions over bands and frames"
    )

    @model_validator(mode="after")
    def _conv_frames(self) -> AudioInput:
        if self.stem == "conv" and (self.patch_frames < 2 or self.patch_frames & (self.patch_frames - 1)):
            raise ValueError(
                f"stem conv needs patch_frames that is a power of two, at least 2, got {self.patch_frames}"
            )
        return self


class AdaptiveSpanConfig(StrictModel):
    max_span: int = Field(..., gt=0, description="longest span a head may learn, in positions")
    ramp: int = Field(32, gt=0, description="width of the soft edge of the mask")
    init: float = Field(0.5, ge=0, le=1, description="initial span as a fraction of max_span")
    penalty: float = Field(2e-6, ge=0, description="loss weight of the mean span")


class AdapterConfig(StrictModel):
    """Parameter-efficient fine-tuning: small trainable adapters on a frozen pretrained body (and its head)."""

    kind: Literal["lora", "bottleneck"] = Field(
        "lora", description="lora: low-rank updates of projections (Hu 2021); bottleneck: Houlsby 2019 adapters"
    )
    rank: int = Field(8, gt=0, description="lora: rank r of B A")
    alpha: float = Field(16.0, gt=0, description="lora: the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1, description="lora: dropout on the adapter's input")
    size: int = Field(64, gt=0, description="bottleneck: width m of d -> m -> d")
    targets: list[str] | None = Field(
        None,
        description="projections: q, k, v, out, attn, ffn, ffn_out or module paths; default lora [q, v], "
        "bottleneck [out, ffn_out] (after attention and after the feed-forward, as Houlsby places them)",
    )

    def resolved_targets(self) -> list[str]:
        return self.targets or (["q", "v"] if self.kind == "lora" else ["out", "ffn_out"])


class ModelConfig(StrictModel):
    arch: Arch = Field(..., description="which assembly to build")
    input: Literal["text", "image", "audio"] = "text"
    vocab_size: int | None = Field(None, gt=0, description="token vocabulary (text input, LM, seq2seq)")
    d_model: int = Field(128, gt=0)
    head_dim: int | None = Field(None, gt=0, description="default: d_model / n_heads")
    encoder: StackConfig | None = None
    decoder: StackConfig | None = None
    activation: Literal["relu", "gelu", "gelu_tanh", "swiglu"] = "gelu"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = Field(1e-5, gt=0)
    norm_position: Literal["pre", "post"] = "pre"
    embed_norm: bool = Field(False, description="normalise embeddings (BERT)")
    position: Literal["sinusoidal", "learned", "rotary", "none"] = "learned"
    segments: int = Field(
        0, ge=0, description="segment (token-type) embeddings for text pairs: 0 none, 2 for BERT's two segments"
    )
    max_len: int = Field(512, gt=0, description="longest sequence, in tokens")
    rope_base: float = Field(10000.0, gt=0, description="rotary: base of the position frequencies")
    bias: bool = True
    dropout: float = Field(0.1, ge=0, lt=1)
    attn_dropout: float = Field(0.0, ge=0, lt=1)
    n_classes: int | None = Field(None, gt=0, description="classes (classifiers, taggers)")
    pooling: Literal["cls", "mean"] = "cls"
    pooler: bool = Field(False, description="BERT's dense+tanh before the classifier")
    pooler_activation: Literal["tanh", "relu"] = Field(
        "tanh", description="the pooler's nonlinearity (DistilBERT: relu)"
    )
    tie_embeddings: bool = Field(True, description="LM head shares the token embedding")
    pad_id: int = Field(0, ge=0)
    bos_id: int | None = Field(None, ge=0)
    eos_id: int | None = Field(None, ge=0)
    image: ImageInput | None = None
    audio: AudioInput | None = None
    adaptive_span: AdaptiveSpanConfig | None = None
    quantization: dict[str, Any] | None = Field(None, description="set by sora quantize")
    adapter: AdapterConfig | None = Field(None, description="adapters this model carries (train.adapters)")

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        needs = {
            "encoder_classifier": ("encoder", "n_classes"),
            "token_classifier": ("encoder", "n_classes"),
            "decoder_lm": ("decoder", "vocab_size"),
            "seq2seq": ("encoder", "decoder", "vocab_size"),
            "encoder": ("encoder",),
            "span_extractor": ("encoder",),
        }[self.arch]
        for key in needs:
            if getattr(self, key) is None:
                raise ValueError(f"arch '{self.arch}' needs '{key}'")
        if self.input == "text" and self.vocab_size is None:
            raise ValueError("text input needs 'vocab_size'")
        for key in ("pad_id", "bos_id", "eos_id") if self.input == "text" else ():  # an id the embedding lacks
            if (getattr(self, key) or 0) >= self.vocab_size:
                raise ValueError(f"{key} {getattr(self, key)} is past the vocabulary (vocab_size {self.vocab_size})")
        if self.segments and self.input != "text":
            raise ValueError(f"segments are for text pairs; this model reads {self.input}")
        if self.input == "image" and self.image is None:
            self.image = ImageInput()
        if self.input == "audio" and self.audio is None:
            self.audio = AudioInput()
        if self.arch == "span_extractor" and self.input != "text":
            raise ValueError("span_extractor reads text (a question and a paragraph)")
        if self.input != "text" and self.arch not in ("encoder_classifier", "token_classifier", "encoder"):
            raise ValueError(f"{self.input} input works with encoder assemblies, not '{self.arch}'")
        if self.head_dim is None:
            counts = [h for s in (self.encoder, self.decoder) if s for h in s.heads() if h]
            first = counts[0] if counts else 1
            if self.d_model % first:
                raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {first}; set head_dim")
            self.head_dim = self.d_model // first
        if self.position == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary position needs an even head_dim, got {self.head_dim}")
        return self

    @property
    def causal(self) -> bool:
        return self.arch == "decoder_lm"
