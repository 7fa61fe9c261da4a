"""Adapters on a frozen pretrained model: where they go, what trains, and the small folder a run saves.

``train.adapters`` (sora.train) adds LoRA updates or bottleneck adapters (sora.particles) to a model that
starts from pretrained weights; only the adapters and the task head train. ``config.adapter`` records
them, so a model folder with adapters rebuilds them (``build_model`` calls ``apply_adapters``).

An **adapter folder** holds what training changed and nothing else: ``adapter.safetensors`` (adapter and
head tensors), ``adapter.json`` (which base: its folder and the SHA-256 of its ``model.safetensors``, checked
on every load), the full ``config.json``, the tokenizer and meta. ``sora.models.load_model`` reads it like a
model folder: base weights, checked, plus the adapter's. LoRA merges into its base weights (``merge_lora``);
a bottleneck adapter is not linear and stays a module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from torch import Tensor, nn

from sora.errors import SoraError
from sora.models.config import AdapterConfig
from sora.particles import AdaptedLinear, FeedForward, LoRALinear, MultiHeadAttention
from sora.paths import file_sha256

ROLES = {
    "q": ("q_proj",),
    "k": ("k_proj",),
    "v": ("v_proj",),
    "out": ("out_proj",),
    "attn": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "ffn": ("fc_in", "fc_gate", "fc_out"),
    "ffn_out": ("fc_out",),
}
ADAPTER_JSON, ADAPTER_WEIGHTS = "adapter.json", "adapter.safetensors"
ADAPTER_PARTS = ("lora_A", "lora_B", ".adapter.")


def adapter_paths(model: nn.Module, targets: list[str], key: str = "adapters.targets") -> list[str]:
    """The Linear layers ``targets`` name, in order: roles (q, v, attn, ffn, ...), paths of projections, or paths
    of attention or feed-forward particles (all their projections). ``key`` names the setting in errors."""
    paths: list[str] = []
    for target in targets:
        if target in ROLES:
            for name, module in model.named_modules():
                if isinstance(module, (MultiHeadAttention, FeedForward)):
                    paths += _projections(name, module, ROLES[target])
            continue
        try:
            module = model.get_submodule(target)
        except AttributeError:
            module = None
        if isinstance(module, nn.Linear):
            paths.append(target)
        elif isinstance(module, (MultiHeadAttention, FeedForward)):
            paths += _projections(target, module, ROLES["attn" if isinstance(module, MultiHeadAttention) else "ffn"])
        else:
            raise SoraError(
                f"{key}: {target!r} is neither a role ({', '.join(ROLES)}) nor the path of a projection, an "
                "attention or a feed-forward particle (see `sora inspect`)"
            )
    return list(dict.fromkeys(paths))


def _projections(path: str, module: nn.Module, names: tuple[str, ...]) -> list[str]:
    return [f"{path}.{p}" for p in names if isinstance(getattr(module, p, None), nn.Linear)]


def apply_adapters(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Wrap the target projections (in place) and record ``config`` in the model's config."""
    if any(isinstance(m, (LoRALinear, AdaptedLinear)) for m in model.modules()):
        raise SoraError("the model already has adapters")
    paths = adapter_paths(model, config.resolved_targets())
    if not paths:
        raise SoraError(f"adapters.targets {config.resolved_targets()}: no projection to adapt in this model")
    for path in paths:
        base = model.get_submodule(path)
        if config.kind == "lora":
            model.set_submodule(path, LoRALinear(base, config.rank, config.alpha, config.dropout))
        else:
            model.set_submodule(path, AdaptedLinear(base, config.size))
    model.config = model.config.model_copy(update={"adapter": config})
    return model


def is_adapter_tensor(name: str) -> bool:
    return any(part in name for part in ADAPTER_PARTS)


def train_only_adapters(model: nn.Module) -> dict:
    """Freeze everything but the adapters and the task head; the parameter counts."""
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter_tensor(name) or name.startswith("head."))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "fraction": trainable / total if total else 0.0}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold LoRA updates into their base weights (in place): a plain model again. Bottleneck adapters stay."""
    if model.config.adapter is None or model.config.adapter.kind != "lora":
        return model
    for path, layer in [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]:
        model.set_submodule(path, layer.merged())
    model.config = model.config.model_copy(update={"adapter": None})
    return model


def adapter_tensors(model: nn.Module) -> dict[str, Tensor]:
    """What training changed: the adapters' tensors and the head's."""
    return {
        k: v.detach().contiguous().clone()
        for k, v in model.state_dict().items()
        if is_adapter_tensor(k) or k.startswith("head.")
    }


def base_state_name(name: str) -> str:
    """A tensor's name in the base model: an adapted Linear keeps its base under ``.base``."""
    return name.replace(".base.", ".")


def read_adapter_json(folder: Path) -> dict:
    try:
        info = json.loads((folder / ADAPTER_JSON).read_text())
        base = info["base"]
        return {**info, "base": {"path": str(base["path"]), "sha256": str(base["sha256"]), **base}}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise SoraError(f"{folder / ADAPTER_JSON}: not an adapter record ({type(e).__name__}: {e})") from None


def check_base(folder: Path, base_weights: Path, sha256: str) -> None:
    """The base an adapter folder names must be the one it was trained on, byte for byte."""
    if not base_weights.is_file():
        raise SoraError(f"{folder / ADAPTER_JSON}: its base model {base_weights.parent} is missing")
    if file_sha256(base_weights) != sha256:
        raise SoraError(
            f"{folder / ADAPTER_JSON}: the base model {base_weights.parent} has changed since the adapter was "
            f"trained (SHA-256 of {base_weights.name} differs); the adapter only fits the base it was trained on"
        )


def adapted_state(folder: Path, read: Callable[[Path], dict[str, Tensor]]) -> dict[str, Tensor]:
    """The full state of an adapter folder's model: its base's tensors (checked against the recorded
    SHA-256), renamed where an adapter wraps a projection, with the adapter's and head's tensors on top."""
    info = read_adapter_json(folder)
    base = Path(info["base"]["path"])
    base = base if base.is_absolute() else folder / base
    check_base(folder, base / "model.safetensors", info["base"]["sha256"])
    own = read(folder / ADAPTER_WEIGHTS)
    adapted = {_wrapped_path(name) for name in own if is_adapter_tensor(name)}
    state = {}
    for name, tensor in read(base / "model.safetensors").items():
        path, leaf = name.rsplit(".", 1) if "." in name else ("", name)
        state[f"{path}.base.{leaf}" if path in adapted else name] = tensor
    state.update(own)
    return state


def _wrapped_path(name: str) -> str:
    """The projection an adapter tensor belongs to: ``layers.0.attn.q_proj`` of ``...q_proj.lora_A``."""
    for part in (".lora_A", ".lora_B", ".adapter."):
        if part in name:
            return name.split(part)[0]
    return name
