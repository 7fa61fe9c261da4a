"""Metrics by group: a split's metrics for each value of one of its columns (a clip's noise level, a voice's accent).

One figure over a whole test split hides where a model fails: a keyword spotter at 97% may be perfect on clean
clips and poor at 0 dB. ``evaluate_by`` runs the split once, group by group, and gives each group's metrics and
the whole split's, which are the groups' additive statistics summed (sora.tasks.metrics), so the overall
figures are exactly those of one pass over the split.

    overall, groups = evaluate_by(model, data, "test", "snr", task, batch_size=64)
    groups["10"]["wer"], groups["clean"]["examples"]
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from torch import Tensor, nn

from sora.data.protocol import TaskData
from sora.errors import SoraError
from sora.tasks.base import Task
from sora.tasks.evaluation import evaluation_totals


def group_name(value: Any) -> str:
    """How a column value names its group: whole numbers without a decimal point ("10", not "10.0"),
    a missing value as "none"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def group_rows(values: Sequence[Any]) -> dict[str, np.ndarray]:
    """Each group's row indices, in reading order: numbers from low to high, then the other names alphabetically
    (noise levels read "0, 5, 10, 20, clean")."""
    rows: dict[str, list[int]] = {}
    for i, value in enumerate(values):
        rows.setdefault(group_name(value), []).append(i)
    return {name: np.asarray(rows[name], dtype=np.int64) for name in sorted(rows, key=_reading_order)}


def _reading_order(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def evaluate_by(
    model: nn.Module,
    data: TaskData,
    split: str,
    column: str,
    task: Task,
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    reduce: Callable[[Tensor], Tensor] | None = None,
    **options: Any,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The task's metrics over ``split`` and over each of its groups by ``column``; each group's also count its
    ``examples``. ``options`` go to ``evaluation_totals`` (device, precision, decode_examples: per group)."""
    totals_by: dict[str, dict[str, Tensor]] = {}
    sizes: dict[str, int] = {}
    for name, rows in group_rows(data.column(split, column)).items():
        loader = data.loader(split, batch_size, rows=rows, rank=rank, world_size=world_size, num_workers=num_workers)
        totals_by[name] = evaluation_totals(model, loader, task, reduce=reduce, **options)
        sizes[name] = len(rows)
    totals_by = {name: totals for name, totals in totals_by.items() if totals}
    if not totals_by:
        raise SoraError(f"evaluation saw no batches (is the {split} split empty?)")
    overall: dict[str, Tensor] = {}
    for totals in totals_by.values():
        for key, value in totals.items():
            overall[key] = overall[key] + value if key in overall else value
    groups = {name: {**task.finish(totals), "examples": sizes[name]} for name, totals in totals_by.items()}
    return task.finish(overall), groups


def describe_groups(column: str, groups: dict[str, dict[str, float]]) -> list[str]:
    """One line a group, for a log: ``snr=10 (212 examples): loss 0.1021 accuracy 0.9811 macro_f1 0.9807``
    (per-class F1 stays in the JSON)."""
    width = max(len(name) for name in groups)
    lines = []
    for name, figures in groups.items():
        shown = " ".join(f"{k} {v:.4f}" for k, v in figures.items() if k != "examples" and not k.startswith("f1_"))
        lines.append(f"{column}={name:<{width}} ({int(figures['examples'])} examples): {shown}")
    return lines
