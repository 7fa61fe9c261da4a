"""What every task answers: how a model runs on its batches, and what the stages measure of it.

Training reads ``loss`` and ``targets``: losses are *sums* over targets and ``targets`` counts them,
so the trainer divides by the count of the whole optimizer step (every micro-batch, every process)
and gradient accumulation and data parallelism give the update of one big batch. Validation reads
``stats`` and ``finish``: statistics are sums too (sora.tasks.metrics), so sharded evaluation adds up
exactly. Analysis reads ``score``: a loss *per example* (head importance is an expectation over
examples, as in Michel et al. 2019) and a task metric that is higher-is-better and lies in [0, 1]
(so "the metric dropped one point" means the same thing for every task).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.data.datasets import IGNORE
from sora.errors import SoraError


def unwrap(model: nn.Module) -> nn.Module:
    """The Sora model inside a DDP or torch.compile wrapper (for its methods and config)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


@dataclass
class Score:
    """One batch's figures for analysis; ``losses`` carries the graph when computed with gradients."""

    losses: Tensor  # (B,) mean loss of each example (over its scored tokens)
    loss_sum: float  # summed over every scored unit (tokens, or examples)
    loss_count: int
    hits: float  # metric numerator
    total: float  # metric denominator


class Task:
    """Base of the tasks (sora.tasks.kinds). A stage that meets a task without what it asks for (a
    feature extractor's loss) gets one line naming the task, not a traceback."""

    name = "task"
    monitor = "loss"  # the metric that picks the best model by default
    metric: str | None = None  # the [0, 1] metric ``score`` counts (analysis.json's "metric")
    required: tuple[str, ...] = ()  # the batch keys the task reads

    def forward(self, model: nn.Module, batch: dict) -> Tensor:
        """The model's logits for the batch: (B, C), (B, T, C) or (B, T, V); text pairs carry segment ids."""
        if "segments" in batch:
            return model(batch["inputs"], batch.get("valid"), batch["segments"])
        return model(batch["inputs"], batch.get("valid"))

    def targets(self, batch: dict) -> int:
        raise self._lacks("a training loss")

    def loss(self, model: nn.Module, batch: dict, label_smoothing: float = 0.0) -> Tensor:
        """Summed loss over the batch's targets (divide by ``targets``)."""
        raise self._lacks("a training loss")

    def stats(self, model: nn.Module, batch: dict, budget: int) -> dict[str, Tensor]:
        """Additive validation statistics; ``budget`` caps examples decoded (seq2seq)."""
        raise self._lacks("validation metrics")

    def finish(self, stats: dict[str, Tensor]) -> dict[str, float]:
        raise self._lacks("validation metrics")

    def score(self, model: nn.Module, batch: dict, logits: Tensor | None = None) -> Score:
        """Loss per example (differentiable) plus summed loss and metric counts; ``logits``: this batch's
        forward, when the caller has run it already (under hooks)."""
        raise self._lacks("a loss to score")

    def examples(self, batch: dict) -> int:
        key = "src" if "src" in batch else "inputs"
        return int(batch[key].shape[0])

    def tokens(self, batch: dict) -> int:
        """Input positions that are real (for tokens/s)."""
        for key in ("valid", "src_valid"):
            if key in batch:
                extra = int(batch["tgt_valid"].sum()) if key == "src_valid" and "tgt_valid" in batch else 0
                return int(batch[key].sum()) + extra
        x = batch.get("inputs")
        return int(x.numel()) if x is not None and x.dtype == torch.long else self.examples(batch)

    def check(self, batch: dict, where: str = "batch") -> None:
        """Refuse a batch that is not a dict or lacks a key the task reads, naming ``where``."""
        if not isinstance(batch, dict):
            raise SoraError(f"{where}: expected a dict of tensors, got {type(batch).__name__}")
        missing = [k for k in self.required if k not in batch]
        if missing:
            raise SoraError(
                f"{where}: a {self.name} batch needs keys {', '.join(self.required)}; "
                f"missing {', '.join(missing)} (has {', '.join(sorted(batch)) or 'none'})"
            )

    def _lacks(self, what: str) -> SoraError:
        return SoraError(f"the {self.name} task has no {what}")


def token_score(logits: Tensor, labels: Tensor) -> Score:
    """Score of a task with a target per position (``labels`` (B, T), IGNORE where none): each example's
    mean loss over its scored tokens, and token accuracy."""
    token_losses = F.cross_entropy(logits.float().transpose(1, 2), labels, reduction="none", ignore_index=IGNORE)
    scored = labels != IGNORE  # (B, T)
    per_example = scored.sum(1)
    losses = token_losses.sum(1) / per_example.clamp_min(1)  # (B,)
    hits = ((logits.argmax(-1) == labels) & scored).sum().item()
    count = int(scored.sum().item())
    return Score(losses, token_losses.sum().item(), count, hits, count)


def summed_token_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy summed over every position with a target (``labels`` (B, T), IGNORE where none)."""
    return F.cross_entropy(
        logits.flatten(0, 1).float(),
        labels.flatten(),
        ignore_index=IGNORE,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
