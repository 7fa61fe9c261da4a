"""Rankings of heads and neurons: which to remove first. Each is a score per particle name, higher = keep longer.

Heads:

- ``gradient``: Michel et al. 2019, E|dL/dξ_h| normalised per layer (L2), as the paper does. Normalising
  puts every layer on the same scale even when one block matters far more than another.
- ``gradient_raw``: the same expectation, not normalised: a head's expected first-order loss change, which
  compares across layers as it stands.
- ``fisher``: E[(dL/dξ_h)^2], the diagonal of the Fisher information of the head masks (Kwon et al. 2022).
- ``iterative``: Michel et al.'s iterative pruning: remove the least important tenth (by ``gradient_raw``),
  re-estimate importance on the model without them, repeat. The score is the step at which a head goes.
- ``ablation``: the measured loss increase when the head alone is removed (costs one evaluation per head).

Neurons: ``taylor`` (|Σ_t a_t dL/da_t|, Molchanov et al. 2017), ``taylor_layer`` (the same normalised per
layer, what a global ranking with ``normalize`` did), ``fisher`` (E[(Σ_t a_t dL/da_t)^2]), ``activation``
(mean |a|), and ``ablation``: within each layer, neurons in Taylor order are cut into groups, each group's
removal is measured, and a neuron scores its group's loss increase (Taylor breaks ties inside a group).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor, nn

from sora.analyze.importance import GradientScores, gradient_scores
from sora.analyze.masking import units_off
from sora.models.names import attention_modules
from sora.tasks import loss_and_metric

HEAD_RANKINGS = ("gradient", "gradient_raw", "fisher", "iterative", "ablation")
NEURON_RANKINGS = ("taylor", "taylor_layer", "fisher", "activation", "ablation")
ITERATIVE_STEPS = 10  # Michel et al. remove 10% of the heads a step
NEURON_GROUPS = 8  # groups per layer measured by neuron ablation


def _by_name(values: dict[str, np.ndarray], unit: str) -> dict[str, float]:
    return {f"{p}.{unit}.{i}": float(v) for p, row in values.items() for i, v in enumerate(row)}


def _per_layer_norm(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {p: v / n if (n := float(np.linalg.norm(v))) > 0 else v for p, v in values.items()}


def head_scores(grads: GradientScores, ranking: str) -> dict[str, float]:
    """A gradient-based head ranking from one gradient pass."""
    source = {"gradient": grads.heads, "gradient_raw": grads.heads_raw, "fisher": grads.heads_fisher}[ranking]
    return _by_name(source, "head")


def neuron_scores(grads: GradientScores, ranking: str) -> dict[str, float]:
    """A gradient- or activation-based neuron ranking from one gradient pass."""
    source = {
        "taylor": grads.taylor,
        "taylor_layer": _per_layer_norm(grads.taylor),
        "fisher": grads.fisher,
        "activation": grads.mean_abs,
    }[ranking]
    return _by_name(source, "neuron")


def iterative_head_scores(model: nn.Module, batches: list[dict[str, Tensor]], task: str) -> dict[str, float]:
    """Michel et al.'s iterative order: a tenth of the heads at a time, importance re-estimated without them."""
    names = [f"{p}.head.{h}" for p, a in attention_modules(model) for h in range(a.n_heads)]
    step = max(1, math.ceil(len(names) / ITERATIVE_STEPS))
    removed: list[str] = []
    while len(removed) < len(names):
        with units_off(model, removed):
            raw = _by_name(gradient_scores(model, batches, task, sample_size=0).heads_raw, "head")
        left = sorted((n for n in names if n not in removed), key=lambda n: (raw[n], n))
        removed += left[:step]
    return {name: float(i) for i, name in enumerate(removed)}  # removed later = more important


def ablation_head_scores(model: nn.Module, batches: list[dict[str, Tensor]], task: str, heads: list[str]):
    """The loss increase when each head alone is switched off."""
    base = loss_and_metric(model, batches, task)["loss"]
    out = {}
    for name in heads:
        with units_off(model, [name]):
            out[name] = loss_and_metric(model, batches, task)["loss"] - base
    return out


def ablation_neuron_scores(
    model: nn.Module, batches: list[dict[str, Tensor]], task: str, taylor: dict[str, np.ndarray]
) -> dict[str, float]:
    """Measured loss increase of removing groups of neurons (in Taylor order within each layer); a neuron
    scores its group's increase plus a tie-break by its Taylor rank inside the group."""
    base = loss_and_metric(model, batches, task)["loss"]
    out = {}
    for path, scores in taylor.items():
        order = np.argsort(scores)  # least important first
        for group in np.array_split(order, min(NEURON_GROUPS, len(order))):
            names = [f"{path}.neuron.{i}" for i in group]
            with units_off(model, names):
                cost = loss_and_metric(model, batches, task)["loss"] - base
            for rank, name in enumerate(names):
                out[name] = cost + 1e-9 * rank
    return out
