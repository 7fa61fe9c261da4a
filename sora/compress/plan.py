"""A pruning plan: which heads, neurons and whole layers to remove, by particle name.

A plan comes from explicit names (``layers.1.attn.head.3``, ``layers.0.ffn.neuron.7``,
``layers.2`` for a whole block, ``layers.1.attn`` or ``layers.1.ffn`` for all of its units) or from
importance scores and a budget (a fraction of all heads or neurons, ranked globally or within each
layer). Indices always refer to the model as it is *before* pruning, so a plan can be read,
reviewed and applied in one go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from sora.errors import SoraError
from sora.models.names import attention_modules, block_paths, feedforward_modules, resolve
from sora.particles import Block, FeedForward, MultiHeadAttention


@dataclass
class PrunePlan:
    heads: dict[str, set[int]] = field(default_factory=dict)  # attention path -> heads to remove
    neurons: dict[str, set[int]] = field(default_factory=dict)  # feed-forward path -> neurons to remove
    layers: set[str] = field(default_factory=set)  # block paths: "layers.3", "decoder.layers.1"

    def add(self, other: PrunePlan) -> PrunePlan:
        for path, idx in other.heads.items():
            self.heads.setdefault(path, set()).update(idx)
        for path, idx in other.neurons.items():
            self.neurons.setdefault(path, set()).update(idx)
        self.layers |= other.layers
        return self

    def names(self) -> list[str]:
        out = sorted(self.layers, key=_natural)
        out += [f"{p}.head.{h}" for p in sorted(self.heads, key=_natural) for h in sorted(self.heads[p])]
        out += [f"{p}.neuron.{n}" for p in sorted(self.neurons, key=_natural) for n in sorted(self.neurons[p])]
        return out

    def is_empty(self) -> bool:
        return not (self.layers or any(self.heads.values()) or any(self.neurons.values()))

    def summary(self, model: nn.Module) -> dict:
        """Counts of what goes, including the heads and neurons inside dropped layers."""
        heads = neurons = 0
        for path, attn in attention_modules(model):
            block = _block_of(path)
            heads += attn.n_heads if block in self.layers else len(self.heads.get(path, ()))
        for path, ffn in feedforward_modules(model):
            block = _block_of(path)
            neurons += ffn.d_ff if block in self.layers else len(self.neurons.get(path, ()))
        total_heads = sum(a.n_heads for _, a in attention_modules(model))
        total_neurons = sum(f.d_ff for _, f in feedforward_modules(model))
        return {
            "heads_removed": heads,
            "heads_total": total_heads,
            "neurons_removed": neurons,
            "neurons_total": total_neurons,
            "layers_removed": sorted(self.layers, key=_natural),
        }


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in name.split(".")]


def _block_of(path: str) -> str:
    """``layers.3.attn`` -> ``layers.3``; ``decoder.layers.1.cross_attn`` -> ``decoder.layers.1``."""
    return path.rsplit(".", 1)[0]


def plan_from_names(model: nn.Module, names: list[str], *, where: str = "plan") -> PrunePlan:
    """Resolve particle names; unknown or unprunable names fail with the name and where it came from."""
    plan = PrunePlan()
    for name in names:
        try:
            ref = resolve(model, name.strip())
        except SoraError as e:
            raise SoraError(f"{where}: {e}") from None
        module = ref.module
        if ref.unit == "head":
            plan.heads.setdefault(ref.module_path, set()).add(ref.index)
        elif ref.unit == "neuron":
            plan.neurons.setdefault(ref.module_path, set()).add(ref.index)
        elif isinstance(module, MultiHeadAttention):
            plan.heads.setdefault(ref.module_path, set()).update(range(module.n_heads))
        elif isinstance(module, FeedForward):
            plan.neurons.setdefault(ref.module_path, set()).update(range(module.d_ff))
        elif isinstance(module, Block):
            plan.layers.add(ref.module_path)
        else:
            raise SoraError(
                f"{where}: cannot prune {name!r} ({type(module).__name__}); prunable particles are "
                "heads (layers.1.attn.head.3), neurons (layers.1.ffn.neuron.7), a whole attention "
                "or ffn (layers.1.attn), and blocks (layers.1)"
            )
    return plan


def plan_from_scores(
    model: nn.Module,
    scores: dict[str, float],
    *,
    heads: float | None = None,
    neurons: float | None = None,
    layers: int | None = None,
    scope: str = "global",
    normalize: bool = True,
    source: str = "scores",
) -> PrunePlan:
    """Remove the least important ``heads`` / ``neurons`` fractions (a layer may lose every unit) and
    the ``layers`` least important blocks (scores keyed by block name, e.g. ``layers.1``)."""
    plan = PrunePlan()
    if layers:
        blocks = block_paths(model)
        if layers > len(blocks):
            raise SoraError(f"layers: cannot drop {layers} blocks, the model has {len(blocks)}")
        missing = [b for b in blocks if b not in scores]
        if missing:
            raise SoraError(f"{source}: no importance score for block(s) {missing[:3]} (measure layer ablation)")
        plan.layers = set(sorted(blocks, key=lambda b: (scores[b], _natural(b)))[:layers])
    if heads:
        units = {path: attn.n_heads for path, attn in attention_modules(model)}
        plan.heads = _lowest(units, "head", scores, heads, scope, normalize, source)
    if neurons:
        units = {path: ffn.d_ff for path, ffn in feedforward_modules(model)}
        plan.neurons = _lowest(units, "neuron", scores, neurons, scope, normalize, source)
    return plan


def _lowest(
    units: dict[str, int],
    unit: str,
    scores: dict[str, float],
    fraction: float,
    scope: str,
    normalize: bool,
    source: str,
) -> dict[str, set[int]]:
    if not 0 <= fraction <= 1:
        raise SoraError(f"{unit} budget {fraction:.0%} is not between 0% and 100% of the {unit}s")
    table: dict[str, torch.Tensor] = {}
    missing = []
    for path, n in units.items():
        names = [f"{path}.{unit}.{i}" for i in range(n)]
        missing += [nm for nm in names if nm not in scores]
        table[path] = torch.tensor([float(scores.get(nm, math.nan)) for nm in names], dtype=torch.float64)
    if missing:
        raise SoraError(
            f"{source}: no importance score for {len(missing)} {unit}(s), e.g. {missing[:3]}; "
            "the scores must come from this model (re-run the analysis on it)"
        )
    out: dict[str, set[int]] = {}
    if scope == "per_layer":
        for path, s in table.items():
            k = round(fraction * len(s))
            out[path] = set(s.argsort()[:k].tolist()) if k else set()
        return out
    flat, owners = [], []
    for path, s in table.items():
        if normalize and len(s):
            s = s / s.norm().clamp_min(1e-12)
        flat.append(s)
        owners += [(path, i) for i in range(len(s))]
    if not owners:
        return out
    k = round(fraction * len(owners))
    order = torch.cat(flat).argsort(stable=True)[:k].tolist()
    for j in order:
        path, i = owners[j]
        out.setdefault(path, set()).add(i)
    return out
