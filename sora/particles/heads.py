"""Task heads: what a model predicts from its final hidden states."""

import torch
from torch import Tensor, nn

from sora.particles.hookpoint import HookPoint


def pool(h: Tensor, valid: Tensor | None, pooling: str) -> Tensor:  # (B, T, d), (B, T) -> (B, d)
    """The CLS position, or the mean of the real positions (sentence embeddings)."""
    if pooling == "cls":
        return h[:, 0]
    if valid is None:
        return h.mean(dim=1)
    w = valid.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


POOLER_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class ClassifierHead(nn.Module):
    """Sequence classification from the CLS position or the mean of real positions.

    ``pooler`` adds a dense layer and a nonlinearity before the classifier: BERT's and RoBERTa's
    dense+tanh, or DistilBERT's dense+ReLU (``pooler_activation``).
    """

    kind = "classifier_head"

    def __init__(
        self,
        d_model: int,
        n_classes: int,
        pooling: str = "cls",
        pooler: bool = False,
        dropout: float = 0.0,
        pooler_activation: str = "tanh",
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if pooler_activation not in POOLER_ACTIVATIONS:
            raise ValueError(
                f"pooler_activation must be one of {sorted(POOLER_ACTIVATIONS)}, got {pooler_activation!r}"
            )
        self.pooling, self.pooler_activation = pooling, pooler_activation
        self.pooler = nn.Linear(d_model, d_model) if pooler else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, n_classes)
        self.hook_pooled = HookPoint()  # (B, d) one vector per sequence, after the pooler (if any)

    def pool(self, h: Tensor, valid: Tensor | None) -> Tensor:  # (B, T, d), (B, T) -> (B, d)
        pooled = pool(h, valid, self.pooling)
        if self.pooler is not None:
            pooled = POOLER_ACTIVATIONS[self.pooler_activation](self.pooler(pooled))
        return self.hook_pooled(pooled)

    def forward(self, h: Tensor, valid: Tensor | None = None) -> Tensor:  # -> (B, n_classes)
        return self.classifier(self.dropout(self.pool(h, valid)))


class LMHead(nn.Module):
    """Next-token logits; its weight may be the token embedding's (tied)."""

    kind = "lm_head"

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False):
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size, bias=bias)

    def forward(self, h: Tensor) -> Tensor:  # (B, T, d) -> (B, T, V)
        return self.proj(h)


class TokenClassifierHead(nn.Module):
    """A label per position (tagging, or CTC over audio frames)."""

    kind = "token_classifier_head"

    def __init__(self, d_model: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, n_classes)

    def forward(self, h: Tensor) -> Tensor:  # (B, T, d) -> (B, T, n_classes)
        return self.classifier(self.dropout(h))


class SpanHead(nn.Module):
    """Where an answer starts and ends: two logits per position (extractive question answering).

    One Linear to (start, end), as BERT's ``qa_outputs``; the answer is the best valid span (sora.tasks.spans).
    """

    kind = "span_head"

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, 2)

    def forward(self, h: Tensor) -> Tensor:  # (B, T, d) -> (B, T, 2): start, end logits
        return self.proj(self.dropout(h))
