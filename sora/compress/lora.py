"""LoRA (Hu et al. 2021): fine-tune a few low-rank adapters instead of the whole model.

Each chosen projection W becomes ``W x + (alpha / r) * B A x`` with A (r, in) small random and B
(out, r) zero, so a fresh adapter changes nothing. Only A and B train; everything else is frozen.
The adapter saves alone (``adapter.safetensors`` + ``adapter.json``: a few hundred KB for a model
of hundreds of MB) and merges into the base as ``W += (alpha / r) B A``, after which the model is an
ordinary Sora model again (ready to prune, quantize or save).

Targets name projections by role (``q``, ``k``, ``v``, ``out``, ``attn`` for all four, ``ffn`` for
fc_in/fc_gate/fc_out) in every layer, or a module path for one place (``layers.1.attn``,
``layers.0.ffn.fc_in``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sora.atomic import staged_dir
from sora.compress.config import LoRAConfig
from sora.errors import SoraError
from sora.models.adapters import adapter_paths
from sora.particles import LoRALinear

ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter.safetensors", "adapter.json"


def target_paths(model: nn.Module, targets: list[str]) -> list[str]:
    """Resolve roles and module paths to the Linear layers that get adapters (sora.models.adapters), leaving out
    projections pruning has emptied."""
    paths = adapter_paths(model, targets, key="lora.targets")
    return [p for p in paths if model.get_submodule(p).weight.numel()]  # a pruned-away projection has none


def add_lora(model: nn.Module, config: LoRAConfig | None = None) -> dict:
    """Wrap the targets in adapters (in place), freeze everything else; return the parameter counts."""
    config = config or LoRAConfig()
    if getattr(getattr(model, "config", None), "quantization", None):
        raise SoraError("LoRA needs an fp32 model: add adapters before quantizing")
    if lora_layers(model):
        raise SoraError("the model already has LoRA adapters: merge or remove them first")
    paths = target_paths(model, config.targets)
    if not paths:
        raise SoraError(f"lora.targets {config.targets}: no projection to adapt in this model")
    for p in model.parameters():
        p.requires_grad_(False)
    for path in paths:
        model.set_submodule(path, LoRALinear(model.get_submodule(path), config.rank, config.alpha, config.dropout))
    model._lora_config = config  # what save_adapter records
    return trainable_parameters(model)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def trainable_parameters(model: nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "fraction": trainable / total if total else 0.0}


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (in place); all parameters become trainable again."""
    for path, layer in lora_layers(model).items():
        model.set_submodule(path, layer.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, "_lora_config"):
        del model._lora_config
    return model


def save_adapter(model: nn.Module, out_dir: str | Path) -> Path:
    """Write only the adapters: ``adapter.safetensors`` (A and B per target) and ``adapter.json``."""
    layers = lora_layers(model)
    if not layers:
        raise SoraError("the model has no LoRA adapters to save")
    config: LoRAConfig = getattr(model, "_lora_config", None) or LoRAConfig()
    tensors = {}
    for path, layer in layers.items():
        tensors[f"{path}.lora_A"] = layer.lora_A.detach().contiguous()
        tensors[f"{path}.lora_B"] = layer.lora_B.detach().contiguous()
    info = {
        "lora": config.model_dump(mode="json"),
        "paths": list(layers),
        "base": model.config.model_dump(mode="json") if hasattr(model, "config") else None,
    }
    with staged_dir(out_dir) as tmp:
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS))
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(info, indent=2) + "\n")
    return Path(out_dir)


def load_adapter(model: nn.Module, adapter_dir: str | Path) -> dict:
    """Add the saved adapters to a base model (in place) and load their weights."""
    adapter_dir = Path(adapter_dir)
    try:
        info = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
        tensors = load_file(str(adapter_dir / ADAPTER_WEIGHTS))
    except (OSError, json.JSONDecodeError) as e:
        raise SoraError(f"{adapter_dir}: not a LoRA adapter folder ({e})") from None
    config = LoRAConfig.model_validate(info["lora"])
    base = info.get("base")
    if base is not None and hasattr(model, "config") and base != model.config.model_dump(mode="json"):
        raise SoraError(f"{adapter_dir}/{ADAPTER_CONFIG}: the adapter was trained on a different model config")
    counts = add_lora(model, config.model_copy(update={"targets": info["paths"]}))
    model._lora_config = config
    for path, layer in lora_layers(model).items():
        for part in ("lora_A", "lora_B"):
            key = f"{path}.{part}"
            if key not in tensors or tensors[key].shape != getattr(layer, part).shape:
                raise SoraError(f"{adapter_dir}/{ADAPTER_WEIGHTS}: {key} is missing or has the wrong shape")
            with torch.no_grad():
                getattr(layer, part).copy_(tensors[key])
    return counts
