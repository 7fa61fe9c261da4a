"""Extractive question answering (task ``span``): the answer is a span of the paragraph.

Batch (sora.data.spans): ``inputs``, ``valid``, ``segments`` (W, T) for W windows, ``starts`` and ``ends``
(W,) the answer's tokens in each window (0, [CLS], when the window does not hold it); for metrics also
``offsets`` (W, T, 2), ``window_of`` (W,) and, per question, ``contexts`` and ``answers`` (reference texts).
All the windows of a question travel in one batch, so a question's best span over its windows is found
within the batch and exact match and F1 add up over batches like any other statistic.

The loss is the mean of the start and end cross-entropies per window. Metrics: ``exact_match`` and ``f1``
in percent, as SQuAD reports them (sora.tasks.squad); ``score``'s [0, 1] metric is F1 / 100.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sora.tasks.base import Score, Task
from sora.tasks.spans import MAX_ANSWER, answers
from sora.tasks.squad import best_over_references

MASKED = -1e4  # the logit of padding positions: never an answer, never a target


def masked_padding(logits: Tensor, valid: Tensor) -> Tensor:
    """(W, T, 2) start and end logits with padding positions at MASKED (``valid`` (W, T) True at real tokens)."""
    return logits.masked_fill(~valid[..., None], MASKED)


class SpanTask(Task):
    name, monitor, metric = "span", "f1", "f1"
    required = ("inputs", "starts", "ends")

    def __init__(self, max_answer: int = MAX_ANSWER):
        self.max_answer = max_answer

    def forward(self, model, batch):  # -> (W, T, 2), padding masked
        logits = super().forward(model, batch)
        valid = batch.get("valid")
        return logits if valid is None else masked_padding(logits, valid)

    def targets(self, batch):
        return int(batch["starts"].shape[0])

    def loss(self, model, batch, label_smoothing=0.0):
        return self._window_losses(self.forward(model, batch), batch, label_smoothing).sum()

    def stats(self, model, batch, budget):
        logits = self.forward(model, batch)
        out = {
            "nats": self._window_losses(logits, batch).sum().double().cpu(),
            "count": torch.tensor(float(logits.shape[0]), dtype=torch.float64),
        }
        if "contexts" in batch:
            em, f1, n = self.matches(logits, batch)
            out.update(em=torch.tensor(em, dtype=torch.float64), f1=torch.tensor(f1, dtype=torch.float64))
            out["questions"] = torch.tensor(float(n), dtype=torch.float64)
        return out

    def finish(self, stats):
        out = {"loss": float(stats["nats"] / stats["count"].clamp_min(1))}
        if "questions" in stats:
            n = float(stats["questions"].clamp_min(1))
            out.update(exact_match=100 * float(stats["em"]) / n, f1=100 * float(stats["f1"]) / n)
        return out

    def score(self, model, batch, logits=None):
        logits = self.forward(model, batch) if logits is None else logits
        losses = self._window_losses(logits, batch)  # (W,)
        _, f1, n = self.matches(logits, batch) if "contexts" in batch else (0.0, 0.0, 0)
        return Score(losses, losses.sum().item(), losses.numel(), f1, n)

    def matches(self, logits: Tensor, batch: dict) -> tuple[float, float, int]:
        """Summed exact match and F1 (each in [0, 1] per question) of the batch's best answers, and its questions."""
        found = answers(logits.detach(), batch["offsets"], batch["window_of"], batch["contexts"], self.max_answer)
        em = f1 = 0.0
        for answer, references in zip(found, batch["answers"]):
            e, f = best_over_references(answer.text, references)
            em, f1 = em + e, f1 + f
        return em, f1, len(found)

    @staticmethod
    def _window_losses(logits: Tensor, batch: dict, label_smoothing: float = 0.0) -> Tensor:  # (W,)
        logits = logits.float()
        start = F.cross_entropy(logits[..., 0], batch["starts"], reduction="none", label_smoothing=label_smoothing)
        end = F.cross_entropy(logits[..., 1], batch["ends"], reduction="none", label_smoothing=label_smoothing)
        return (start + end) / 2
