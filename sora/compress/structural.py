"""Structural pruning: heads, neurons and whole layers leave the matrices, not just the maths.

Removing head h slices rows ``h*dh:(h+1)*dh`` out of Q, K and V, the same columns out of the output
projection, and entry h out of ``head_gate`` and the adaptive-span parameters. Removing neuron i
slices row i of ``fc_in`` (and ``fc_gate`` for SwiGLU), column i of ``fc_out`` and entry i of
``neuron_mask``. Removing a block drops it and renumbers the rest. The pruned weights go into a
model *built from the new config* (per-layer head counts and widths), so the pruned model is
exactly what ``load_model`` rebuilds from its folder.

``mask_model`` is the reference the pruned model must equal: the same plan applied with gates and
masks (and skipped blocks), all matrices left at full size.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import Tensor, nn

from sora.compress.plan import PrunePlan
from sora.errors import SoraError
from sora.models import ModelConfig, build_model
from sora.particles import Block, FeedForward, MultiHeadAttention


def _check_prunable(model: nn.Module) -> ModelConfig:
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise SoraError("pruning needs a Sora model (built with sora.models.build_model or load_model)")
    if config.quantization:
        raise SoraError("cannot prune a quantized model: prune the fp32 model, then quantize")
    if any(name.endswith("lora_A") for name, _ in model.named_parameters()):
        raise SoraError("cannot prune a model with LoRA adapters: merge them first (sora.compress.lora.merge)")
    return config


def prune_model(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """A new, smaller model with the plan's heads, neurons and layers removed (the input is untouched)."""
    config = _check_prunable(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sizes = _layer_sizes(model)

    for path, drop in plan.heads.items():
        attn = model.get_submodule(path)
        keep = [h for h in range(attn.n_heads) if h not in drop]
        rows = _head_rows(keep, attn.head_dim)
        for proj in ("q_proj", "k_proj", "v_proj"):
            _slice(state, f"{path}.{proj}.weight", rows, 0)
            _slice(state, f"{path}.{proj}.bias", rows, 0)
        _slice(state, f"{path}.out_proj.weight", rows, 1)
        _slice(state, f"{path}.head_gate", torch.tensor(keep, dtype=torch.long), 0)
        _slice(state, f"{path}.adaptive_span.span_fraction", torch.tensor(keep, dtype=torch.long), 0)
        sizes[path] = len(keep)

    for path, drop in plan.neurons.items():
        ffn = model.get_submodule(path)
        keep = torch.tensor([i for i in range(ffn.d_ff) if i not in drop], dtype=torch.long)
        for proj in ("fc_in", "fc_gate"):
            _slice(state, f"{path}.{proj}.weight", keep, 0)
            _slice(state, f"{path}.{proj}.bias", keep, 0)
        _slice(state, f"{path}.fc_out.weight", keep, 1)
        _slice(state, f"{path}.neuron_mask", keep, 0)
        sizes[path] = len(keep)

    state = _drop_layers(state, plan.layers)
    new_config = _pruned_config(config, sizes, plan.layers)
    pruned = build_model(new_config)
    try:
        pruned.load_state_dict(state, strict=True)
    except RuntimeError as e:  # a bug here, not bad input: say which tensors disagree
        raise RuntimeError(f"pruned weights do not fit the pruned config: {e}") from None
    return pruned.train(model.training)


def _head_rows(keep: list[int], head_dim: int) -> Tensor:
    if not keep:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in keep])


def _slice(state: dict[str, Tensor], key: str, index: Tensor, dim: int) -> None:
    if key in state:
        state[key] = state[key].index_select(dim, index).contiguous()


def _layer_sizes(model: nn.Module) -> dict[str, int]:
    """Current heads per attention path and neurons per feed-forward path."""
    sizes = {}
    for name, module in model.named_modules():
        if isinstance(module, MultiHeadAttention):
            sizes[name] = module.n_heads
        elif isinstance(module, FeedForward):
            sizes[name] = module.d_ff
    return sizes


def _drop_layers(state: dict[str, Tensor], layers: set[str]) -> dict[str, Tensor]:
    """Remove dropped blocks' tensors and renumber the survivors of each stack contiguously."""
    if not layers:
        return state
    pattern = re.compile(r"^((?:.*\.)?layers)\.(\d+)\.(.*)$")
    by_stack: dict[str, set[int]] = {}
    for key in state:
        m = pattern.match(key)
        if m:
            by_stack.setdefault(m.group(1), set()).add(int(m.group(2)))
    renumber = {}
    for stack, indices in by_stack.items():
        kept = [i for i in sorted(indices) if f"{stack}.{i}" not in layers]
        renumber[stack] = {old: new for new, old in enumerate(kept)}
    out = {}
    for key, value in state.items():
        m = pattern.match(key)
        if not m:
            out[key] = value
            continue
        stack, i, rest = m.group(1), int(m.group(2)), m.group(3)
        if i in renumber[stack]:
            out[f"{stack}.{renumber[stack][i]}.{rest}"] = value
    return out


def _pruned_config(config: ModelConfig, sizes: dict[str, int], dropped: set[str]) -> ModelConfig:
    data = config.model_dump(mode="json")
    stacks = {"decoder_lm": {"": "decoder"}, "seq2seq": {"encoder.": "encoder", "decoder.": "decoder"}}.get(
        config.arch, {"": "encoder"}
    )
    for prefix, key in stacks.items():
        stack = getattr(config, key)
        heads, widths, cross = [], [], []
        for i in range(stack.n_layers):
            block = f"{prefix}layers.{i}"
            if block in dropped:
                continue
            heads.append(sizes[f"{block}.attn"])
            widths.append(sizes[f"{block}.ffn"])
            if stack.cross_heads is not None:
                cross.append(sizes[f"{block}.cross_attn"])
        entry = {"n_layers": len(heads), "n_heads": _compact(heads), "d_ff": _compact(widths)}
        entry["cross_heads"] = _compact(cross) if stack.cross_heads is not None else None
        data[key] = entry
    return ModelConfig.model_validate(data)


def _compact(values: list[int]) -> int | list[int]:
    """One number when every layer agrees (as a hand-written config would say it), else the list."""
    return values[0] if values and all(v == values[0] for v in values) else values


def mask_model(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """A copy with the plan applied by gates and masks (blocks skipped), every matrix at full size."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for path, drop in plan.heads.items():
            gate = masked.get_submodule(path).head_gate
            gate[sorted(drop)] = 0.0
        for path, drop in plan.neurons.items():
            mask = masked.get_submodule(path).neuron_mask
            mask[sorted(drop)] = 0.0
    for path in plan.layers:
        masked.get_submodule(path).register_forward_hook(lambda module, args, output: args[0])
    return masked


def renamed(model: nn.Module, plan: PrunePlan) -> dict[str, str]:
    """Old particle name -> its name after ``prune_model(model, plan)``, for every unit and block that stays.

    Surviving heads and neurons move down to fill the gaps, and blocks are renumbered, so scores
    measured before pruning can be carried over to the pruned model.
    """
    blocks: dict[str, str] = {}
    by_stack: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, Block):
            by_stack.setdefault(name.rsplit(".", 1)[0], []).append(name)
    for stack, names in by_stack.items():
        kept = [n for n in names if n not in plan.layers]
        blocks.update({old: f"{stack}.{i}" for i, old in enumerate(kept)})
    out = dict(blocks)
    for path, module in model.named_modules():
        unit, drop = (
            ("head", plan.heads)
            if isinstance(module, MultiHeadAttention)
            else ("neuron", plan.neurons)
            if isinstance(module, FeedForward)
            else (None, None)
        )
        if unit is None:
            continue
        block, rest = path.rsplit(".", 1)
        if block not in blocks:
            continue
        size = module.n_heads if unit == "head" else module.d_ff
        keep = [i for i in range(size) if i not in drop.get(path, ())]
        new_path = f"{blocks[block]}.{rest}"
        out.update({f"{path}.{unit}.{old}": f"{new_path}.{unit}.{new}" for new, old in enumerate(keep)})
    return out
