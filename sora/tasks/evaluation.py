"""A model over a task's batches: the metrics training validates with, and the figures analysis compares.

``evaluate(model, loader, task)`` gives a task's metrics (loss, accuracy, bleu, cer, ...), as training,
``sora eval`` and compression report them. ``loss_and_metric(model, batches, task)`` gives analysis's
two figures: mean loss per scored unit and the task's [0, 1] metric (``Task.score``).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from sora.errors import SoraError
from sora.tasks.base import Score, Task
from sora.tasks.device import autocast, to_device
from sora.tasks.registry import as_task


def evaluate(
    model: nn.Module,
    loader: Iterable[dict],
    task: Task | str,
    *,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    max_batches: int | None = None,
    decode_examples: int = 200,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, float]:
    """Run ``model`` over ``loader`` and return the task's metrics (loss, accuracy, bleu, ...).

    ``reduce`` sums a statistic over processes (sora.train.distributed) when each process
    evaluates its own shard; ``decode_examples`` caps the examples decoded for BLEU on this process.
    """
    task = as_task(task)
    totals = evaluation_totals(
        model,
        loader,
        task,
        device=device,
        precision=precision,
        max_batches=max_batches,
        decode_examples=decode_examples,
        reduce=reduce,
    )
    if not totals:
        raise SoraError("evaluation saw no batches (is the split empty?)")
    return task.finish(totals)


@torch.no_grad()
def evaluation_totals(
    model: nn.Module,
    loader: Iterable[dict],
    task: Task,
    *,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    max_batches: int | None = None,
    decode_examples: int = 200,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """The task's additive statistics over ``loader`` (empty when it has no batch): ``task.finish`` turns
    them into metrics, and the totals of parts (shards, groups) add up to the whole's."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals: dict[str, Tensor] = {}
    budget = decode_examples
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            batch = to_device(batch, device)
            with autocast(device, precision):
                stats = task.stats(model, batch, budget)
            budget -= int(stats.get("decoded", torch.tensor(0.0)))
            for key, value in stats.items():
                value = value.detach().double().cpu()
                totals[key] = totals[key] + value if key in totals else value
    finally:
        model.train(was_training)
    if reduce is not None:
        totals = {k: reduce(v) for k, v in sorted(totals.items())}
    return totals


def run_model(model: nn.Module, batch: dict[str, Tensor], task: Task | str) -> Tensor:
    """The model's logits for a batch of ``task``: (B, C), (B, T, C) or (B, T, V)."""
    return as_task(task).forward(model, batch)


def score(model: nn.Module, batch: dict[str, Tensor], task: Task | str, logits: Tensor | None = None) -> Score:
    """Loss per example (differentiable) plus summed loss and metric counts (``Task.score``)."""
    return as_task(task).score(model, batch, logits)


def score_figures(scores: Iterable[Score]) -> dict[str, float]:
    """Mean loss per scored unit and the [0, 1] metric over the scores of many batches."""
    loss_sum = hits = total = 0.0
    count = 0
    for s in scores:
        loss_sum, count, hits, total = loss_sum + s.loss_sum, count + s.loss_count, hits + s.hits, total + s.total
    return {"loss": loss_sum / max(count, 1), "metric": hits / total if total else float("nan")}


@torch.no_grad()
def loss_and_metric(model: nn.Module, batches: Iterable[dict[str, Tensor]], task: Task | str) -> dict[str, float]:
    """Mean loss (per scored unit) and the task metric over every batch, as the model is (mode, device)."""
    task = as_task(task)
    return score_figures(task.score(model, batch) for batch in batches)
