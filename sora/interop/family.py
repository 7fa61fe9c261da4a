"""What every architecture family (BERT, RoBERTa, DistilBERT, GPT-2, ViT) provides, and what they share.

A family converts both ways. Import: a Hugging Face config and checkpoint become a Sora
``ModelConfig`` and a Sora state dict. Export: a Sora model becomes a Hugging Face config and
state dict, after ``export_problems`` has said whether transformers can represent it at all.
Most weights are plain renames, listed as (sora name, Hugging Face name) pairs used in both
directions; each family writes out only its few real transformations (position tables, fused
QKV, transposed Conv1D weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from sora.errors import SoraError
from sora.interop.checkpoint import Checkpoint
from sora.models import ModelConfig

# Hugging Face activation names -> Sora's, and back. gelu_new, gelu_fast and gelu_pytorch_tanh are
# all the tanh approximation; "gelu" is the exact erf form.
ACTIVATIONS_IN = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}
ACTIVATIONS_OUT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


@dataclass
class Imported:
    """The result of converting a Hugging Face checkpoint."""

    config: ModelConfig
    state: dict[str, Tensor]  # Sora parameter name -> tensor
    labels: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # what a user should know (folded, dropped)
    meta: dict = field(default_factory=dict)  # facts for meta.json that export needs (token_types)


class Family:
    model_type: str = ""
    prefix: str = ""  # the body's prefix inside task models ("bert.")
    # Hugging Face class -> Sora arch. Pretraining heads (masked LM) import as the bare encoder.
    architectures: dict[str, str] = {}
    dropped_heads: dict[str, str] = {}  # class -> why its head is not carried over
    exports: dict[str, str] = {}  # Sora arch -> Hugging Face class written on export

    def import_checkpoint(self, hf: dict, ck: Checkpoint, arch: str, pooling: str) -> Imported:
        raise NotImplementedError

    def export_problems(self, config: ModelConfig) -> list[str]:
        """Why transformers cannot represent ``config`` in this family (empty: it can)."""
        raise NotImplementedError

    def export_checkpoint(
        self, config: ModelConfig, state: dict[str, Tensor], labels: list[str] | None
    ) -> tuple[dict, dict[str, Tensor]]:
        raise NotImplementedError


def hf_activation(hf: dict, key: str, source: str) -> str:
    name = hf.get(key, "gelu")
    if not isinstance(name, str) or name not in ACTIVATIONS_IN:  # a list or mapping cannot even be looked up
        raise SoraError(f"{source}: {key}={name!r} is not supported (supported: {', '.join(sorted(ACTIVATIONS_IN))})")
    return ACTIVATIONS_IN[name]


def hf_ints(hf: dict, source: str, *keys: str) -> list[int]:
    """Required positive integers from a Hugging Face config, or an error naming the key."""
    values = []
    for key in keys:
        value = hf.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise SoraError(f"{source}: needs a positive integer {key!r} (got {value!r})")
        values.append(value)
    return values


def hf_labels(hf: dict) -> list[str] | None:
    """Label names ordered by id, from ``id2label`` (keys are strings in config.json)."""
    id2label = hf.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        ordered = sorted((int(k), str(v)) for k, v in id2label.items())
    except ValueError:
        return None
    return [name for _, name in ordered] if [i for i, _ in ordered] == list(range(len(ordered))) else None


def n_labels(hf: dict, source: str) -> int:
    labels = hf_labels(hf)
    n = hf.get("num_labels") or (len(labels) if labels else None) or 2
    if not isinstance(n, int) or n < 1:
        raise SoraError(f"{source}: num_labels must be a positive integer, got {n!r}")
    return n


def label_config(config: ModelConfig, labels: list[str] | None) -> dict:
    labels = labels if labels and len(labels) == config.n_classes else [f"LABEL_{i}" for i in range(config.n_classes)]
    return {
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def take_pairs(ck: Checkpoint, pairs: list[tuple[str, str]], out: dict[str, Tensor], *, top: bool = False) -> None:
    for sora_name, hf_name in pairs:
        out[sora_name] = ck.take(hf_name, top=top)


def give_pairs(
    state: dict[str, Tensor], pairs: list[tuple[str, str]], out: dict[str, Tensor], prefix: str = ""
) -> None:
    for sora_name, hf_name in pairs:
        out[prefix + hf_name] = state[sora_name]


def linear_pairs(sora: str, hf: str) -> list[tuple[str, str]]:
    """A Linear or LayerNorm: its weight and bias."""
    return [(f"{sora}.weight", f"{hf}.weight"), (f"{sora}.bias", f"{hf}.bias")]


def common_export_problems(config: ModelConfig, family: str, *, stack: str = "encoder") -> list[str]:
    """What no supported transformers architecture represents: the checks every family shares."""
    problems = []
    if config.quantization:
        problems.append(
            f"it is quantized ({config.quantization.get('method', '?')}); transformers cannot load "
            "Sora's quantized weights: export the float model"
        )
    if config.adaptive_span is not None:
        problems.append("it uses adaptive attention span, which transformers' attention has no place for")
    if config.norm != "layernorm":
        problems.append(f"{family} uses LayerNorm, this model {config.norm}")
    if not config.bias:
        problems.append(f"{family} has biases on every linear layer; this model has none")
    if config.position != "learned":
        problems.append(f"{family} has learned absolute positions; this model uses {config.position} positions")
    if config.activation not in ACTIVATIONS_OUT:
        problems.append(f"{family} has no {config.activation} feed-forward")
    stack_config = getattr(config, stack)
    heads, widths = stack_config.heads(), stack_config.widths()
    if not heads:
        problems.append("it has no layers left; transformers models have at least one")
    elif 0 in heads:
        problems.append(f"layer {heads.index(0)} has no attention heads left; transformers layers always attend")
    elif len(set(heads)) > 1:
        problems.append(
            f"heads per layer differ ({heads}); transformers stores one head count for every layer "
            "(it has no pruned-heads support any more)"
        )
    elif heads and heads[0] * config.head_dim != config.d_model:
        problems.append(
            f"{heads[0]} heads of width {config.head_dim} do not fill d_model={config.d_model}; "
            f"{family} derives head width as hidden size / heads"
        )
    if 0 in widths:
        problems.append(f"layer {widths.index(0)} has a zero-width feed-forward")
    elif len(set(widths)) > 1:
        problems.append(f"feed-forward widths differ across layers ({widths}); transformers stores one width")
    return problems


def fold_gates(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Fold head gates and neuron masks into the output projections (exact for any gate value).

    A gate scales a head's output before ``out_proj``, so it can scale that head's columns of
    ``out_proj`` instead; a neuron mask likewise scales columns of ``fc_out``.
    """
    state = dict(state)
    for key in [k for k in state if k.endswith(".head_gate") or k.endswith(".neuron_mask")]:
        gate = state.pop(key)
        if key.endswith(".head_gate"):
            weight_key = key[: -len("head_gate")] + "out_proj.weight"
            if gate.numel() and not torch.all(gate == 1):
                W = state[weight_key]  # (d, H*dh)
                state[weight_key] = (W.view(W.shape[0], gate.numel(), -1) * gate.view(1, -1, 1)).reshape_as(W)
        else:
            weight_key = key[: -len("neuron_mask")] + "fc_out.weight"
            if gate.numel() and not torch.all(gate == 1):
                state[weight_key] = state[weight_key] * gate.view(1, -1)
    return state


def check_consumed(state: dict[str, Tensor], used: set[str], what: str) -> None:
    """Every Sora parameter must have found a place in the Hugging Face checkpoint."""
    left = sorted(set(state) - used)
    if left:
        raise SoraError(
            f"{what}: parameters with no place in the transformers model: {', '.join(left[:8])}"
            f"{' ...' if len(left) > 8 else ''} (merge adapters such as LoRA into the weights first)"
        )
