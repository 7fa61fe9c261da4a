"""Stable particle names and how to find the module and index behind one.

``layers.3.attn.head.5`` is head 5 of the attention module at ``layers.3.attn``;
``layers.3.ffn.neuron.1021`` is neuron 1021 of ``layers.3.ffn``; any other name is a module path
(``layers.3.ffn``, ``embed.tokens``, ``head``). Hooks, importance scores, pruning plans and
reports all use these names.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sora.errors import SoraError
from sora.particles import Block, FeedForward, MultiHeadAttention


@dataclass(frozen=True)
class ParticleRef:
    name: str
    module_path: str
    module: nn.Module
    unit: str | None = None  # "head" or "neuron"
    index: int | None = None


def resolve(model: nn.Module, name: str) -> ParticleRef:
    parts = name.split(".")
    unit = index = None
    if len(parts) >= 3 and parts[-2] in ("head", "neuron") and parts[-1].isdigit():
        unit, index = parts[-2], int(parts[-1])
        path = ".".join(parts[:-2])
    else:
        path = name
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        raise SoraError(f"unknown particle {name!r}: no module at {path!r} (see `sora inspect`)") from None
    if unit == "head":
        if not isinstance(module, MultiHeadAttention):
            raise SoraError(f"unknown particle {name!r}: {path!r} is not an attention particle")
        if index >= module.n_heads:
            raise SoraError(f"unknown particle {name!r}: {path!r} has {module.n_heads} heads")
    elif unit == "neuron":
        if not isinstance(module, FeedForward):
            raise SoraError(f"unknown particle {name!r}: {path!r} is not a feed-forward particle")
        if index >= module.d_ff:
            raise SoraError(f"unknown particle {name!r}: {path!r} has {module.d_ff} neurons")
    return ParticleRef(name, path, module, unit, index)


def block_paths(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, Block)]


def attention_modules(model: nn.Module) -> list[tuple[str, MultiHeadAttention]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)]


def feedforward_modules(model: nn.Module) -> list[tuple[str, FeedForward]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FeedForward)]


def head_names(model: nn.Module) -> list[str]:
    return [f"{path}.head.{h}" for path, attn in attention_modules(model) for h in range(attn.n_heads)]
