"""Estimate every configured ranking of heads and neurons, then check each against random order.

Rankings are estimated on the analysis batches; their curves are measured on the check batches (the
whole split up to ``check_examples``), which include them: a ranking measured on the same examples it is
judged on (ablation) gets a small advantage there. Compression's test-split figures carry no such bias.
"""

from __future__ import annotations

import time

from torch import Tensor, nn

from sora.analyze import rankings as R
from sora.analyze.checks import check_rankings
from sora.analyze.config import AnalyzeConfig
from sora.analyze.importance import GradientScores
from sora.analyze.masking import MaskedEval
from sora.analyze.reconstruct import intact_outputs, tuned_gates
from sora.models.names import attention_modules, feedforward_modules


def default_rankings(config: AnalyzeConfig) -> tuple[list[str], list[str]]:
    """The head and neuron rankings to check: those configured, else every one (ablation only when the
    analysis measures ablation: it costs an evaluation per head or neuron group)."""
    ablation = "ablation" in config.methods
    heads = config.rankings
    if heads is None:
        heads = [r for r in R.HEAD_RANKINGS if r != "ablation" or ablation]
    if config.pruning_order != "best":  # the ranking the curve is asked to show is checked too
        heads = [*heads, config.pruning_order]
    neurons = config.neuron_rankings
    if neurons is None:
        neurons = [r for r in R.NEURON_RANKINGS if r != "ablation" or ablation]
    return list(dict.fromkeys(heads)), list(dict.fromkeys(neurons))


def head_rankings(
    model: nn.Module,
    data: list[dict[str, Tensor]],
    task: str,
    names: list[str],
    grads: GradientScores,
    ablation: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Scores of each named head ranking (``ablation``: the loss increases the analysis measured, if given)."""
    heads = [f"{p}.head.{h}" for p, a in attention_modules(model) for h in range(a.n_heads)]
    out = {}
    for name in names:
        if name == "iterative":
            out[name] = R.iterative_head_scores(model, data, task)
        elif name == "ablation":
            out[name] = ablation if ablation else R.ablation_head_scores(model, data, task, heads)
        else:
            out[name] = R.head_scores(grads, name)
    return out


def neuron_rankings(
    model: nn.Module, data: list[dict[str, Tensor]], task: str, names: list[str], grads: GradientScores
) -> dict[str, dict[str, float]]:
    out = {}
    for name in names:
        if name == "ablation":
            out[name] = R.ablation_neuron_scores(model, data, task, grads.taylor)
        else:
            out[name] = R.neuron_scores(grads, name)
    return out


def measure_rankings(
    model: nn.Module,
    data: list[dict[str, Tensor]],
    check_data: list[dict[str, Tensor]],
    task: str,
    config: AnalyzeConfig,
    grads: GradientScores,
    head_ablation: dict[str, float] | None = None,
) -> dict:
    """``{"heads": check, "neurons": check}`` (see sora.analyze.checks), each with the seconds it took."""
    head_names, neuron_names = default_rankings(config)
    evaluator = MaskedEval(model, check_data, task)
    shown = None if config.pruning_order == "best" else config.pruning_order
    out = {}
    heads = [f"{p}.head.{h}" for p, a in attention_modules(model) for h in range(a.n_heads)]
    if heads and head_names:
        if config.reconstruct:  # Kwon et al.'s mask tuning, calibrated on the analysis batches
            targets = intact_outputs(model, data, task)
            evaluator = MaskedEval(model, check_data, task, lambda gone: tuned_gates(model, data, task, gone, targets))
        start = time.perf_counter()
        scores = head_rankings(model, data, task, head_names, grads, head_ablation)
        steps = config.pruning_steps if config.pruning_steps is not None or len(heads) <= 48 else 24
        out["heads"] = check_rankings(
            evaluator, heads, scores, steps=steps, seeds=config.pruning_seeds, seed=config.seed, shown=shown
        )
        out["heads"]["seconds"] = round(time.perf_counter() - start, 2)
    neurons = [f"{p}.neuron.{i}" for p, f in feedforward_modules(model) for i in range(f.d_ff)]
    if neurons and neuron_names:
        start = time.perf_counter()
        evaluator.tune = None  # heads only: neuron masks are not tuned
        scores = neuron_rankings(model, data, task, neuron_names, grads)
        out["neurons"] = check_rankings(
            evaluator,
            neurons,
            scores,
            steps=config.neuron_steps,
            seeds=config.pruning_seeds,
            seed=config.seed,
            marks=False,
        )
        out["neurons"]["seconds"] = round(time.perf_counter() - start, 2)
    return out
