"""Switch heads and neurons off by name, and score every example of the model as it then is.

A pruning curve evaluates the same batches under many masks; ``MaskedEval`` keeps each example's hits
(correct predictions, or correct tokens) so that curves can be bootstrapped over examples, and caches
them by the set of units removed: two orders that agree on their first k units share that point.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from sora.tasks import IGNORE, as_task, score


def split_name(name: str) -> tuple[str, str, int]:
    """``layers.1.attn.head.3`` -> (``layers.1.attn``, ``head``, 3)."""
    path, unit, index = name.rsplit(".", 2)
    return path, unit, int(index)


@contextmanager
def units_off(model: nn.Module, names: Iterable[str], values: dict[str, float] | None = None) -> Iterator[None]:
    """Switch the named heads (``head_gate``) and neurons (``neuron_mask``) off for the duration; ``values``
    sets other units' gates instead (tuned masks). The old gates and masks come back after."""
    saved: dict[str, tuple[Tensor, Tensor]] = {}

    def buffer(path: str, unit: str) -> Tensor:
        module = model.get_submodule(path)
        buf = module.head_gate if unit == "head" else module.neuron_mask
        saved.setdefault(f"{path}.{unit}", (buf, buf.clone()))
        return buf

    try:
        for name, value in (values or {}).items():
            path, unit, i = split_name(name)
            buffer(path, unit)[i] = value
        for name in names:
            path, unit, i = split_name(name)
            buffer(path, unit)[i] = 0.0
        yield
    finally:
        for buf, old in saved.values():
            buf.copy_(old)


@torch.no_grad()
def example_hits(model: nn.Module, batch: dict[str, Tensor], task: str) -> tuple[np.ndarray, np.ndarray]:
    """Each example's metric numerator and denominator: (B,) hits and totals. Tasks without a per-example
    count (CTC) give the batch as one unit."""
    t = as_task(task)
    if t.name == "classification":
        logits = t.forward(model, batch)  # (B, C)
        hits = (logits.argmax(-1) == batch["labels"]).double()
        return hits.cpu().numpy(), np.ones(hits.shape[0])
    if t.name in ("lm", "token_classification", "seq2seq"):
        labels = batch["tgt_out"] if t.name == "seq2seq" else batch["labels"]
        logits = t.forward(model, batch)  # (B, T, V)
        scored = labels != IGNORE
        hits = ((logits.argmax(-1) == labels) & scored).sum(1).double()
        return hits.cpu().numpy(), scored.sum(1).double().cpu().numpy()
    s = score(model, batch, task)
    return np.array([s.hits], dtype=float), np.array([s.total], dtype=float)


class MaskedEval:
    """Per-example hits of ``model`` on ``batches`` with sets of units removed, cached by the set. With ``tune``
    (removed units -> gate values of the others, e.g. sora.analyze.reconstruct) a curve can also be measured
    with the kept units' gates tuned."""

    def __init__(self, model: nn.Module, batches: list[dict[str, Tensor]], task: str, tune=None):
        self.model, self.batches, self.task, self.tune = model, batches, task, tune
        self.cache: dict[tuple[frozenset[str], bool], np.ndarray] = {}
        self.totals = np.concatenate([example_hits(model, b, task)[1] for b in batches])  # (N,)
        self.evaluations = 0

    def hits(self, removed: Iterable[str], tuned: bool = False) -> np.ndarray:
        """(N,) hits with ``removed`` switched off (and the others' gates tuned)."""
        removed = list(removed)
        key = (frozenset(removed), tuned and bool(removed))
        if key not in self.cache:
            values = self.tune(removed) if key[1] else None
            with units_off(self.model, removed, values):
                self.cache[key] = np.concatenate([example_hits(self.model, b, self.task)[0] for b in self.batches])
            self.evaluations += 1
        return self.cache[key]

    def curve(self, order: list[str], counts: list[int], tuned: bool = False) -> np.ndarray:
        """(K, N): each example's hits after removing the first k units of ``order``, for k in counts."""
        return np.stack([self.hits(order[:k], tuned) for k in counts])
