"""Ablation: remove any particle by name and see what the model does without it.

A particle is removed by replacing its activation while the model runs:

- ``zero``: set it to 0 (for a head, the same as ``head_gate[h] = 0``),
- ``mean``: set it to its mean over a reference dataset (keeps the average signal, removes the
  information: often a fairer test than zero, which can push later layers off distribution),
- ``resample``: take it from another input (by default the next example of the same batch).

What is replaced, by particle kind:

| particle | activation |
|---|---|
| ``layers.1.attn.head.3`` | head 3's slice of ``layers.1.attn.hook_z`` (B, T, H, dh) |
| ``layers.1.ffn.neuron.7`` | neuron 7 of ``layers.1.ffn.hook_post`` (B, T, F) |
| ``layers.1`` (a block) | its contribution ``resid_post - resid_pre``: zero skips the block |
| ``layers.1.attn``, ``layers.1.ffn``, ``embed.tokens``, ``embed.position`` ... | its ``hook_out`` |
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from sora.analyze.tasks import run_model
from sora.analyze.tracing import hooks, stack_prefix, token_valid
from sora.errors import SoraError
from sora.models.names import resolve
from sora.particles import Block, HookPoint

MODES = ("zero", "mean", "resample")


@dataclass(frozen=True)
class Target:
    """Where a particle lives: the hook to patch and which slice of it."""

    particle: str
    hook: str  # for blocks: hook_resid_post (hook_resid_pre is read alongside)
    dim: int | None = None  # None: the whole activation
    index: int | None = None
    block: bool = False

    @property
    def pre_hook(self) -> str:
        return self.hook.removesuffix("post") + "pre"


def target(model: nn.Module, particle: str) -> Target:
    ref = resolve(model, particle)
    if ref.unit == "head":
        return Target(particle, f"{ref.module_path}.hook_z", 2, ref.index)  # (B, T, H, dh)
    if ref.unit == "neuron":
        return Target(particle, f"{ref.module_path}.hook_post", -1, ref.index)  # (B, T, F)
    if isinstance(ref.module, Block):
        return Target(particle, f"{ref.module_path}.hook_resid_post", block=True)
    if isinstance(getattr(ref.module, "hook_out", None), HookPoint):
        return Target(particle, f"{ref.module_path}.hook_out" if ref.module_path else "hook_out")
    raise SoraError(f"cannot ablate {particle!r}: it has no output activation to replace "
                    "(ablate a head, a neuron, a block, an attention or feed-forward layer, or an embedding)")


def _reduce_dims(t: Tensor, hook: str) -> int:
    """How many leading dims are batch/position (averaged over); the rest are features."""
    return t.dim() - (2 if hook.endswith("hook_z") else 1)


@torch.no_grad()
def activation_means(model: nn.Module, batches: list[dict[str, Tensor]], task: str, particles: list[str]) -> dict[str, Tensor]:
    """Mean activation of each particle over real positions of the reference batches."""
    targets = [target(model, p) for p in particles]
    sums: dict[str, Tensor] = {}
    counts: dict[str, float] = defaultdict(float)
    for batch in batches:
        valids = token_valid(model, batch, task)
        seen: dict[str, Tensor] = {}
        names = {t.hook for t in targets} | {t.pre_hook for t in targets if t.block}
        with hooks(model, {n: (lambda x, n: seen.__setitem__(n, x)) for n in names}):
            run_model(model, batch, task)
        for hook in {t.hook for t in targets}:
            if hook not in seen:
                continue
            x = seen[hook]
            if any(t.block and t.hook == hook for t in targets):
                x = x - seen[hook.removesuffix("post") + "pre"]  # the block's contribution
            valid = valids.get(stack_prefix(model, hook))
            lead = _reduce_dims(x, hook)
            if valid is not None and lead == 2 and tuple(x.shape[:2]) == tuple(valid.shape):
                w = valid.to(x.dtype).reshape(*valid.shape, *([1] * (x.dim() - 2)))
                total, n = (x * w).sum(dim=(0, 1)), valid.sum().item()
            else:
                total, n = x.sum(dim=tuple(range(lead))), float(x.shape[:lead].numel())
            sums[hook] = sums[hook] + total if hook in sums else total
            counts[hook] += n
    missing = [t.particle for t in targets if t.hook not in sums]
    if missing:
        raise SoraError(f"cannot take means of {missing}: no activation reached them (no batches, or zero-width layers)")
    return {t.particle: sums[t.hook] / max(counts[t.hook], 1.0) for t in targets}


@contextmanager
def ablate(
    model: nn.Module,
    particles: str | list[str],
    mode: str = "zero",
    *,
    means: dict[str, Tensor] | None = None,
    batches: list[dict[str, Tensor]] | None = None,
    task: str | None = None,
    source: dict[str, Tensor] | None = None,
) -> Iterator[None]:
    """Run the model with particles removed.

    ``mean`` needs ``means`` (from ``activation_means``) or reference ``batches`` and ``task``;
    ``resample`` takes activations from ``source`` (a batch of the same shape, needs ``task``), or
    from the next example in the same batch when no source is given.
    """
    if mode not in MODES:
        raise SoraError(f"unknown ablation mode {mode!r}; expected one of {', '.join(MODES)}")
    particles = [particles] if isinstance(particles, str) else list(particles)
    targets = [target(model, p) for p in particles]
    if mode == "mean" and means is None:
        if batches is None or task is None:
            raise SoraError("mean ablation needs means=activation_means(...) or reference batches= and task=")
        means = activation_means(model, batches, task, particles)
    source_acts: dict[str, Tensor] = {}
    if mode == "resample" and source is not None:
        if task is None:
            raise SoraError("resample ablation from a source batch needs task=")
        names = {t.hook for t in targets} | {t.pre_hook for t in targets if t.block}
        with torch.no_grad(), hooks(model, {n: (lambda x, n: source_acts.__setitem__(n, x)) for n in names}):
            run_model(model, source, task)

    by_hook: dict[str, list[Target]] = defaultdict(list)
    for t in targets:
        by_hook[t.hook].append(t)
    pre_seen: dict[str, Tensor] = {}

    def replacement(t: Target, x: Tensor) -> Tensor:
        """The value the ablated slice (or whole activation) takes, shaped like x's slice."""
        if t.block:
            pre = pre_seen[t.pre_hook]
            if mode == "zero":
                return pre
            if mode == "mean":
                return pre + means[t.particle].to(x.dtype)
            if source is not None:
                return pre + _same_shape(source_acts[t.hook] - source_acts[t.pre_hook], x, t)
            return pre + _roll(x - pre, t)
        if mode == "zero":
            return torch.zeros_like(_slice(x, t))
        if mode == "mean":
            value = means[t.particle].to(x.dtype)
            return value[t.index] if t.index is not None and t.dim == 2 else value[..., t.index] if t.index is not None else value
        if source is not None:
            return _slice(_same_shape(source_acts[t.hook], x, t), t)
        return _slice(_roll(x, t), t)

    def patch(x: Tensor, hook: str) -> Tensor:
        out = x.clone()
        for t in by_hook[hook]:
            value = replacement(t, x)
            if t.index is None:
                out = value.expand_as(x).clone() if value.shape != x.shape else value
            elif t.dim == 2:
                out[:, :, t.index] = value
            else:
                out[..., t.index] = value
        return out

    fns = {hook: patch for hook in by_hook}
    for t in targets:
        if t.block:
            fns[t.pre_hook] = lambda x, n: pre_seen.__setitem__(n, x)
    with ExitStack() as stack:
        stack.enter_context(hooks(model, fns))
        yield


def _slice(x: Tensor, t: Target) -> Tensor:
    if t.index is None:
        return x
    return x[:, :, t.index] if t.dim == 2 else x[..., t.index]


def _roll(x: Tensor, t: Target) -> Tensor:
    if x.dim() < 3 or x.shape[0] < 2:
        raise SoraError(f"cannot resample {t.particle!r} within the batch: it needs a batch of at least two "
                        f"examples with a batch dimension (activation shape {tuple(x.shape)}); pass source=")
    return x.roll(1, dims=0)  # example b takes example b-1's activation


def _same_shape(src: Tensor, x: Tensor, t: Target) -> Tensor:
    if src.shape != x.shape:
        raise SoraError(f"cannot resample {t.particle!r}: source activation {tuple(src.shape)} differs from "
                        f"{tuple(x.shape)}; pad the source batch to the same size")
    return src
