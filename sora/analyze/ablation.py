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
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from sora.analyze.tracing import hooks, stack_prefix, token_valid
from sora.errors import SoraError
from sora.models.names import resolve
from sora.particles import Block, HookPoint
from sora.tasks import run_model

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
    raise SoraError(
        f"cannot ablate {particle!r}: it has no output activation to replace "
        "(ablate a head, a neuron, a block, an attention or feed-forward layer, or an embedding)"
    )


def _reduce_dims(t: Tensor, hook: str) -> int:
    """How many leading dims are batch/position (averaged over); the rest are features."""
    return t.dim() - (2 if hook.endswith("hook_z") else 1)


@torch.no_grad()
def activation_means(
    model: nn.Module, batches: list[dict[str, Tensor]], task: str, particles: list[str]
) -> dict[str, Tensor]:
    """Mean activation of each particle over real positions of the reference batches."""
    targets = [target(model, p) for p in particles]
    sums: dict[str, Tensor] = {}
    counts: dict[str, float] = defaultdict(float)
    for batch in batches:
        valids = token_valid(model, batch, task)
        seen = _captured(model, batch, task, targets)
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
        raise SoraError(
            f"cannot take means of {missing}: no activation reached them (no batches, or zero-width layers)"
        )
    return {t.particle: sums[t.hook] / max(counts[t.hook], 1.0) for t in targets}


def _captured(model: nn.Module, batch: dict[str, Tensor], task: str, targets: list[Target]) -> dict[str, Tensor]:
    """The activations ``targets`` read (blocks: their input too) when the model runs on ``batch``."""
    seen: dict[str, Tensor] = {}
    names = {t.hook for t in targets} | {t.pre_hook for t in targets if t.block}
    with torch.no_grad(), hooks(model, {n: (lambda x, n: seen.__setitem__(n, x)) for n in names}):
        run_model(model, batch, task)
    return seen


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
    source_acts = None
    if mode == "resample" and source is not None:
        if task is None:
            raise SoraError("resample ablation from a source batch needs task=")
        source_acts = _captured(model, source, task, targets)
    with hooks(model, _Patcher(mode, targets, means, source_acts).functions()):
        yield


@dataclass
class _Patcher:
    """The hook functions that replace each target's activation (or its slice) while the model runs."""

    mode: str
    targets: list[Target]
    means: dict[str, Tensor] | None  # mode "mean": by particle
    source_acts: dict[str, Tensor] | None  # mode "resample" from a source batch; None: from the same batch
    pre_seen: dict[str, Tensor] = field(default_factory=dict)  # blocks' inputs in this forward pass

    def functions(self) -> dict[str, Callable[[Tensor, str], Tensor | None]]:
        """Hook name -> function: a patch at each target's hook, a recorder at each block's input."""
        fns = {t.hook: self.patch for t in self.targets}
        for t in self.targets:
            if t.block:
                fns[t.pre_hook] = lambda x, n: self.pre_seen.__setitem__(n, x)
        return fns

    def patch(self, x: Tensor, hook: str) -> Tensor:
        out = x.clone()
        for t in self.targets:
            if t.hook != hook:
                continue
            value = self.block_value(t, x) if t.block else self.value(t, x)
            if t.index is None:
                out = value.expand_as(x).clone() if value.shape != x.shape else value
            elif t.dim == 2:
                out[:, :, t.index] = value
            else:
                out[..., t.index] = value
        return out

    def block_value(self, t: Target, x: Tensor) -> Tensor:
        """A block's output with its contribution (``x`` minus its input) removed, averaged or resampled."""
        pre = self.pre_seen[t.pre_hook]
        if self.mode == "zero":
            return pre
        if self.mode == "mean":
            return pre + self.means[t.particle].to(x.dtype)
        if self.source_acts is not None:
            return pre + _same_shape(self.source_acts[t.hook] - self.source_acts[t.pre_hook], x, t)
        return pre + _roll(x - pre, t)

    def value(self, t: Target, x: Tensor) -> Tensor:
        """The value the ablated slice (or whole activation) takes, shaped like x's slice."""
        if self.mode == "zero":
            return torch.zeros_like(_slice(x, t))
        if self.mode == "mean":
            value = self.means[t.particle].to(x.dtype)
            if t.index is None:
                return value
            return value[t.index] if t.dim == 2 else value[..., t.index]
        if self.source_acts is not None:
            return _slice(_same_shape(self.source_acts[t.hook], x, t), t)
        return _slice(_roll(x, t), t)


def _slice(x: Tensor, t: Target) -> Tensor:
    if t.index is None:
        return x
    return x[:, :, t.index] if t.dim == 2 else x[..., t.index]


def _roll(x: Tensor, t: Target) -> Tensor:
    if x.dim() < 3 or x.shape[0] < 2:
        raise SoraError(
            f"cannot resample {t.particle!r} within the batch: it needs a batch of at least two "
            f"examples with a batch dimension (activation shape {tuple(x.shape)}); pass source="
        )
    return x.roll(1, dims=0)  # example b takes example b-1's activation


def _same_shape(src: Tensor, x: Tensor, t: Target) -> Tensor:
    if src.shape != x.shape:
        raise SoraError(
            f"cannot resample {t.particle!r}: source activation {tuple(src.shape)} differs from "
            f"{tuple(x.shape)}; pad the source batch to the same size"
        )
    return src
