"""The pruning curve (Michel et al. 2019, figure 3): switch heads off one by one and watch the metric.

Three orders are compared: by importance (least important first, the order a pruner would use),
random (averaged over several seeds) and reverse (most important first). If the importance
scores mean anything, the importance curve stays high while random falls, and reverse falls
fastest. Heads are switched off through ``head_gate`` (a gated head contributes exactly nothing),
across every attention module at once: self-attention and cross-attention heads alike.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
from torch import Tensor, nn

from sora.models.names import resolve
from sora.tasks import loss_and_metric

MARKS = (0.25, 0.5, 0.75)  # fractions of heads removed reported in analysis.json


@contextmanager
def gates_off(model: nn.Module, heads: list[str]) -> Iterator[None]:
    """Switch the named heads off (gate 0) for the duration; the old gates come back after."""
    saved = {}
    for name in heads:
        ref = resolve(model, name)
        gate = ref.module.head_gate
        saved.setdefault(ref.module_path, (gate, gate.clone()))
        gate[ref.index] = 0.0
    try:
        yield
    finally:
        for gate, old in saved.values():
            gate.copy_(old)


def removal_counts(n_heads: int, steps: int | None) -> list[int]:
    """How many heads are removed at each point: every count, or ``steps`` even ones, plus the marks."""
    if steps is None or steps >= n_heads:
        counts = set(range(n_heads + 1))
    else:
        counts = {round(i * n_heads / steps) for i in range(steps + 1)}
    counts |= {round(f * n_heads) for f in MARKS}
    return sorted(counts)


def curve(
    model: nn.Module, batches: list[dict[str, Tensor]], task: str, order: list[str], counts: list[int]
) -> list[float]:
    """The task metric after removing the first k heads of ``order``, for each k in counts."""
    out = []
    for k in counts:
        with gates_off(model, order[:k]):
            out.append(loss_and_metric(model, batches, task)["metric"])
    return out


def pruning_curves(
    model: nn.Module,
    batches: list[dict[str, Tensor]],
    task: str,
    importance: dict[str, float],
    *,
    steps: int | None = None,
    seeds: int = 3,
    seed: int = 0,
) -> dict:
    """Metric vs fraction of heads removed in importance, random and reverse order."""
    heads = sorted(importance, key=lambda h: (importance[h], h))  # least important first
    n = len(heads)
    counts = removal_counts(n, steps)
    fractions = [k / n if n else 0.0 for k in counts]
    rng = np.random.default_rng(seed)
    randoms = [
        curve(model, batches, task, [heads[i] for i in rng.permutation(n)], counts) for _ in range(max(seeds, 1))
    ]
    orders = {
        "importance": curve(model, batches, task, heads, counts),
        "random": np.mean(randoms, axis=0).tolist(),
        "reverse": curve(model, batches, task, heads[::-1], counts),
    }
    marks = {}
    for f in MARKS:
        i = counts.index(round(f * n))
        marks[f"{int(f * 100)}%"] = {name: values[i] for name, values in orders.items()}
    return {
        "heads": n,
        "order": heads,
        "removed": counts,
        "fraction": fractions,
        "metric": orders,
        "random_std": np.std(randoms, axis=0).tolist(),
        "random_seeds": max(seeds, 1),
        "at": marks,
        "prunable_within_1_point": {name: prunable_fraction(fractions, values) for name, values in orders.items()},
    }


def prunable_fraction(fractions: list[float], metric: list[float], tolerance: float = 0.01) -> float:
    """The largest fraction of heads removed before the metric first falls more than ``tolerance``
    (one point) below the intact model."""
    base, best = metric[0], 0.0
    for f, m in zip(fractions, metric):
        if m < base - tolerance:
            break
        best = f
    return best


def pruning_view(check: dict) -> dict | None:
    """The head check (sora.analyze.checks) as the pruning curve of one ranking, random and reverse order:
    the section reports and scripts have read since before rankings were checked."""
    shown = check["shown"]
    if shown is None:
        return None
    orders = {
        "importance": check["rankings"][shown]["metric"],
        "random": check["random"]["metric"],
        "reverse": check["reverse"]["metric"],
    }
    counts, n = check["removed"], check["units"]
    marks = {
        f"{int(f * 100)}%": {name: values[counts.index(round(f * n))] for name, values in orders.items()} for f in MARKS
    }
    return {
        "heads": n,
        "order": check["shown_order"],
        "order_by": shown,
        "removed": counts,
        "fraction": check["fraction"],
        "metric": orders,
        "random_std": check["random"]["std"],
        "random_seeds": check["random"]["seeds"],
        "examples": check["examples"],
        "at": marks,
        "prunable_within_1_point": {
            "importance": check["rankings"][shown]["prunable_within_1_point"],
            "random": check["random"]["prunable_within_1_point"],
            "reverse": check["reverse"]["prunable_within_1_point"],
        },
        "evaluated_counts": len(counts),
    }
