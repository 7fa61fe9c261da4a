"""Encoder assemblies: a bidirectional stack with a classification, per-token or answer-span head.

The embedder decides the modality: text, images (ViT-style) or audio (spectrogram patches).
"""

from torch import Tensor

from sora.models.config import ModelConfig
from sora.models.stack import Stack
from sora.particles import ClassifierHead, SpanHead, TokenClassifierHead
from sora.particles.heads import pool


class EncoderClassifier(Stack):
    """One label per input: sentiment, spam, image class, keyword."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.encoder)
        self.head = ClassifierHead(
            config.d_model,
            config.n_classes,
            config.pooling,
            config.pooler,
            config.dropout,
            pooler_activation=config.pooler_activation,
        )

    def forward(
        self, inputs: Tensor, valid: Tensor | None = None, segments: Tensor | None = None
    ) -> Tensor:  # -> logits (B, n_classes)
        keep = 1 if self._reads_first_only() else None
        h, valid = self.run_stack(inputs, valid, keep_last=keep, segments=segments)  # (B, T or 1, d)
        return self.head(h, valid if keep is None or valid is None else valid[:, :keep])

    def _reads_first_only(self) -> bool:
        """A CLS-pooled head reads one position of the last block: its other positions need no queries, no FFN
        and no output projection (about a sixth of a 6-layer BERT's work), at inference and in training alike
        (their gradient is zero). Not while anything listens to that block's hook points, so analysis sees every
        position."""
        return self.config.pooling == "cls" and len(self.layers) > 0 and self.may_skip_work(self.layers[-1])


class TokenClassifier(Stack):
    """One label per token (or per audio patch, for CTC speech recognition)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.encoder)
        self.head = TokenClassifierHead(config.d_model, config.n_classes, config.dropout)

    def forward(
        self, inputs: Tensor, valid: Tensor | None = None, segments: Tensor | None = None
    ) -> Tensor:  # -> logits (B, T, n_classes)
        h, _ = self.run_stack(inputs, valid, segments=segments)
        return self.head(h)

    def output_valid(self, inputs: Tensor, valid: Tensor | None) -> Tensor | None:
        """Which output positions are real (audio frames map to patches)."""
        if valid is not None and self.config.input == "audio":
            return self.embed.patches.token_mask(valid)
        if valid is None and self.embed.tokens is not None:
            return inputs != self.config.pad_id
        return valid


class SpanExtractor(Stack):
    """Extractive question answering: a question and a paragraph in, start and end logits per token out."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.encoder)
        self.head = SpanHead(config.d_model, config.dropout)

    def forward(
        self, inputs: Tensor, valid: Tensor | None = None, segments: Tensor | None = None
    ) -> Tensor:  # -> (B, T, 2) start and end logits
        h, _ = self.run_stack(inputs, valid, segments=segments)
        return self.head(h)


class Encoder(Stack):
    """A feature extractor: the last hidden states of every position, and one pooled vector per input.

    What a pretrained body without a task head becomes (a Hugging Face ``BertModel`` or ``ViTModel``,
    sora.interop). It has no head; ``pooled`` gives sentence embeddings (``config.pooling``: mean
    of real positions or CLS). A classifier with the same body can start from its weights.
    """

    head = None

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.encoder)

    def forward(
        self, inputs: Tensor, valid: Tensor | None = None, segments: Tensor | None = None
    ) -> Tensor:  # -> hidden states (B, T, d)
        h, _ = self.run_stack(inputs, valid, segments=segments)
        return h

    def pooled(self, inputs: Tensor, valid: Tensor | None = None, segments: Tensor | None = None) -> Tensor:  # (B, d)
        h, valid = self.run_stack(inputs, valid, segments=segments)
        return pool(h, valid, self.config.pooling)
