"""Tracing: run a model with an activation cache, or with hooks that read or replace activations.

Every activation a tool may want is a HookPoint named by its path (``layers.1.attn.hook_z``).
``hook_points(model)`` lists them; ``select_hooks`` filters them by glob, list or predicate, so
one layer can be cached without paying memory for all of them.

Attention patterns are special: the fast forward pass (SDPA) never forms them. Hooking
``hook_pattern`` would switch attention to its explicit path, which agrees with SDPA only to
about 1e-6. So a *cache* of patterns does not hook it: it taps the queries and keys (``hook_q`` and
``hook_k``, both after the rotary rotation) and the mask and computes softmax(QK^T/sqrt(dh) + mask)
beside the forward pass, exactly as the explicit path would. Outputs stay bit-identical while the
patterns are still available. A hook that *replaces* a pattern
(``hooks(model, {"...hook_pattern": fn})``) does switch to the explicit path, as it must.
"""

from __future__ import annotations

import fnmatch
import math
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from sora.errors import SoraError
from sora.particles import HookPoint, MultiHeadAttention, attention_mask
from sora.tasks import run_model

HookFn = Callable[[Tensor, str], Tensor | None]  # (activation, hook name) -> replacement or None
Selector = str | Iterable[str] | Callable[[str], bool] | None


def hook_points(model: nn.Module) -> list[str]:
    """Every hook point of a model, in forward order of its modules."""
    return [name for name, m in model.named_modules() if isinstance(m, HookPoint)]


def select_hooks(model: nn.Module, which: Selector = None) -> list[str]:
    """Hook names chosen by a glob (``"layers.1.*"``), a list of names or globs, or a predicate."""
    names = hook_points(model)
    if which is None:
        return names
    if callable(which):
        return [n for n in names if which(n)]
    patterns = [which] if isinstance(which, str) else list(which)
    chosen: list[str] = []
    for pattern in patterns:
        matched = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            hint = ", ".join(names[:6])
            raise SoraError(
                f"hook {pattern!r} matches no hook point of this model (e.g. {hint}; see sora.analyze.hook_points)"
            )
        chosen.extend(n for n in matched if n not in chosen)
    return [n for n in names if n in chosen]  # forward order


@contextmanager
def hooks(model: nn.Module, fns: dict[str, HookFn]) -> Iterator[None]:
    """Attach ``fn(activation, name)`` at each named hook point; a returned tensor replaces it."""
    handles = []
    try:
        for name, fn in fns.items():
            point = _hook_point(model, name)
            handles.append(point.register_forward_hook(lambda _m, _i, out, fn=fn, name=name: fn(out, name)))
        yield
    finally:
        for h in handles:
            h.remove()


def _hook_point(model: nn.Module, name: str) -> HookPoint:
    try:
        point = model.get_submodule(name)
    except AttributeError:
        point = None
    if not isinstance(point, HookPoint):
        raise SoraError(f"{name!r} is not a hook point of this model (see sora.analyze.hook_points)")
    return point


class ActivationCache(dict):
    """Activations by hook name (a plain dict) plus helpers for the common lookups."""

    def heads(self, attn_path: str) -> Tensor:  # (B, T, H, dh) each head's output
        return self[f"{attn_path}.hook_z"]

    def pattern(self, attn_path: str) -> Tensor:  # (B, H, T, S)
        return self[f"{attn_path}.hook_pattern"]

    def neurons(self, ffn_path: str) -> Tensor:  # (B, T, F)
        return self[f"{ffn_path}.hook_post"]


@contextmanager
def caching(model: nn.Module, which: Selector = None, *, detach: bool = True) -> Iterator[ActivationCache]:
    """Fill an ActivationCache with the selected activations of every forward pass run inside."""
    names = select_hooks(model, which)
    cache = ActivationCache()
    keep = (lambda t: t.detach()) if detach else (lambda t: t)
    plain, taps = {}, []
    for name in names:
        attn_path = name.removesuffix(".hook_pattern")
        attn = model.get_submodule(attn_path) if name.endswith(".hook_pattern") else None
        if isinstance(attn, MultiHeadAttention) and not (attn.explicit or attn.adaptive_span is not None):
            taps.append(PatternTap(attn, lambda p, name=name: cache.__setitem__(name, keep(p))))
        else:
            plain[name] = lambda t, name: cache.__setitem__(name, keep(t))
    try:
        with hooks(model, plain):
            yield cache
    finally:
        for tap in taps:
            tap.remove()


def run_with_cache(
    model: nn.Module, batch: dict[str, Tensor], task: str, which: Selector = None, *, detach: bool = True
) -> tuple[Tensor, ActivationCache]:
    """Run one batch; return the logits and the selected activations."""
    with caching(model, which, detach=detach) as cache:
        logits = run_model(model, batch, task)
    return logits, cache


class PatternTap:
    """Computes an attention module's pattern beside its SDPA forward, without touching it."""

    def __init__(self, attn: MultiHeadAttention, sink: Callable[[Tensor], None]):
        self.attn, self.sink, self.q = attn, sink, None
        self.mask, self.is_causal = None, False
        self.handles = [
            attn.register_forward_pre_hook(self._pre, with_kwargs=True),
            attn.hook_q.register_forward_hook(self._take_q),
            attn.hook_k.register_forward_hook(self._take_k),
        ]

    def _pre(self, _module, args, kwargs):
        self.mask = kwargs["mask"] if "mask" in kwargs else (args[2] if len(args) > 2 else None)
        self.is_causal = kwargs.get("is_causal", False)  # causal with no mask tensor (SDPA's fused kernel)
        if kwargs.get("cache", args[3] if len(args) > 3 else None) is not None:
            raise SoraError("attention patterns are traced on whole sequences, not while decoding with a KV cache")

    def _take_q(self, _module, _inputs, q):  # (B, H, T, dh), rotated like the keys
        self.q = q

    def _take_k(self, _module, _inputs, k):  # (B, H, S, dh)
        scores = self.q @ k.transpose(-2, -1) / math.sqrt(self.attn.head_dim)  # (B, H, T, S)
        if self.mask is None and self.is_causal:
            self.mask = attention_mask(
                None,
                q_len=scores.shape[-2],
                k_len=scores.shape[-1],
                causal=True,
                dtype=scores.dtype,
                device=scores.device,
            )
        if self.mask is not None:
            scores = scores + self.mask
        self.sink(scores.softmax(dim=-1))
        self.q = self.mask = None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# Which stack a hook belongs to, and that stack's token validity and ids (for means and statistics).


def stack_prefix(model: nn.Module, name: str) -> str:
    """ "encoder." / "decoder." inside a seq2seq model, "" in single-stack models."""
    for prefix in ("encoder.", "decoder."):
        if name.startswith(prefix) and hasattr(model, prefix[:-1]):
            return prefix
    return ""


def stack_of(model: nn.Module, prefix: str) -> nn.Module:
    return model.get_submodule(prefix[:-1]) if prefix else model


def token_valid(model: nn.Module, batch: dict[str, Tensor], task: str) -> dict[str, Tensor | None]:
    """Per stack, which positions are real tokens (B, T); None where every position is."""
    if task == "seq2seq":
        src_valid = batch.get("src_valid")
        if src_valid is None:
            src_valid = batch["src"] != model.config.pad_id
        tgt_valid = batch.get("tgt_valid")
        if tgt_valid is None:
            tgt_valid = batch["tgt_out"] != -100
        return {"encoder.": src_valid.bool(), "decoder.": tgt_valid.bool()}
    if task == "lm":
        return {"": batch["labels"] != -100}
    valid = batch.get("valid")
    config = model.config
    if config.input == "audio":
        return {"": model.embed.patches.token_mask(valid).bool() if valid is not None else None}
    if config.input == "image":
        return {"": None}
    return {"": (valid if valid is not None else batch["inputs"] != config.pad_id).bool()}


def token_ids(batch: dict[str, Tensor], task: str) -> dict[str, Tensor | None]:
    """Per stack, the token ids its positions hold (None for images and audio)."""
    if task == "seq2seq":
        return {"encoder.": batch["src"], "decoder.": batch["tgt_in"]}
    inputs = batch["inputs"]
    return {"": inputs if inputs.dtype == torch.long and inputs.dim() == 2 else None}


def batch_size(batch: dict[str, Tensor]) -> int:
    return next(v for v in batch.values() if isinstance(v, Tensor)).shape[0]
