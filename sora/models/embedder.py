"""The input stage: tokens, image patches or audio patches, plus position, norm and dropout.

Which source it holds decides the model's modality; everything after it is the same.
Particle names: ``embed.tokens`` or ``embed.patches``, ``embed.position``, ``embed.segment`` (text pairs).
"""

import torch
from torch import Tensor, nn

from sora.models.config import ModelConfig
from sora.particles import (
    AudioPatchEmbedding,
    HookPoint,
    ImagePatchEmbedding,
    LearnedPosition,
    SegmentEmbedding,
    SinusoidalPosition,
    TokenEmbedding,
    make_norm,
)


class Embedder(nn.Module):
    kind = "embedder"

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.tokens = self.patches = None
        if config.input == "text":
            self.tokens = TokenEmbedding(config.vocab_size, d)
        elif config.input == "image":
            im = config.image
            self.patches = ImagePatchEmbedding(
                im.size, im.patch, im.channels, d, cls=config.pooling == "cls", stem=im.stem
            )
        else:
            au = config.audio
            cls = config.arch == "encoder_classifier" and config.pooling == "cls"
            self.patches = AudioPatchEmbedding(au.n_mels, au.patch_frames, d, cls=cls, stem=au.stem)
        self.position = {
            "learned": LearnedPosition(config.max_len, d),
            "sinusoidal": SinusoidalPosition(config.max_len, d),
        }.get(config.position)
        self.segment = SegmentEmbedding(config.segments, d) if config.segments else None
        self.norm = make_norm(config.norm, d, config.norm_eps) if config.embed_norm else None
        self.dropout = nn.Dropout(config.dropout)
        self.hook_out = HookPoint()  # (B, T, d) the first block's input: tokens or patches, position, norm, dropout

    def forward(
        self, inputs: Tensor, offset: int = 0, segments: Tensor | None = None
    ) -> Tensor:  # ids (B, T) or images/mels, segment ids (B, T) -> (B, T, d)
        x = self.tokens(inputs) if self.tokens is not None else self.patches(inputs)
        if self.position is not None:
            x = x + self.position(x.shape[1], offset)
        if self.segment is not None:  # no segment ids: one text, segment 0 everywhere
            x = x + self.segment(segments if segments is not None else torch.zeros_like(inputs))
        if self.norm is not None:
            x = self.norm(x)
        return self.hook_out(self.dropout(x) if self.training else x)
