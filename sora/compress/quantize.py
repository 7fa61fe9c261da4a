"""int8 dynamic quantization of a whole model: which Linears and embeddings become int8, and how.

Which path: measured on this 2-core CPU (docs/compression.md, bench/compress.py), PyTorch's
dynamic int8 GEMM (what ``torch.ao.quantization.quantize_dynamic`` uses; ``sora.particles.int8``
picks its kernel) beat fp32 on BERT-sized matrices at batch 1 and 32, while torchao's
``Int8DynamicActivationInt8WeightConfig`` in eager mode was slower than fp32 at both. On small
matrices int8 loses to fp32: quantizing the activations costs more than the GEMM saves. So only a
Linear with at least ``min_weights`` weights and ``min_side`` inputs and outputs runs in int8;
smaller ones are stored int8 too but multiply in fp32 with their dequantized weights. The model is
then not slower than fp32 at any batch size, and about 4x smaller on disk either way.

The folder: ``model.safetensors`` holds int8 weights and fp32 per-row scales (``*.weight``,
``*.scale``) beside the fp32 rest; ``config.quantization`` lists which modules are int8 and which
int8 Linear shares its matrix with an embedding (tied LM heads are stored once). The int8 modules
are particles (``sora.particles.int8``) and the folder's layout is the model folder's
(``sora.models.quantized``): ``sora.models.load_model`` rebuilds an int8 model without this module.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from sora.compress.config import QuantizeConfig
from sora.errors import SoraError
from sora.models import ModelConfig, save_model
from sora.models.quantized import INT8_METHOD, linear_compute, write_int8
from sora.particles import Int8Embedding, Int8Linear, MultiHeadAttention, TokenEmbedding


def is_quantized(model: nn.Module) -> bool:
    return bool(
        (getattr(model, "config", None) and model.config.quantization)
        or any(isinstance(m, (Int8Linear, Int8Embedding)) for m in model.modules())
    )


def int8_linears(model: nn.Module, config: QuantizeConfig | None = None) -> list[str]:
    """The Linears big enough to run the int8 GEMM (``min_weights``, ``min_side``), by name.

    A self-attention's Q, K and V count together: in int8 they run as one stacked GEMM
    (``Int8Linear.project_together``), so a layer pruned to a few heads still qualifies."""
    config = config or QuantizeConfig()
    gemm = {name: m.weight.shape for name, m in model.named_modules() if isinstance(m, nn.Linear)}  # (out, in)
    for path, attn in model.named_modules():
        if isinstance(attn, MultiHeadAttention) and not attn.cross:
            names = [f"{path}.{p}" for p in ("q_proj", "k_proj", "v_proj")]
            if all(n in gemm for n in names):
                stacked = (sum(gemm[n][0] for n in names), gemm[names[0]][1])
                gemm.update(dict.fromkeys(names, stacked))
    return [
        name
        for name, (rows, cols) in gemm.items()
        if rows * cols and rows * cols >= config.min_weights and min(rows, cols) >= config.min_side
    ]


def quantize_model(
    model: nn.Module,
    config: QuantizeConfig | None = None,
    *,
    fp32_compute: list[str] | tuple[str, ...] = (),
    row_scaled: list[str] | tuple[str, ...] = (),
) -> nn.Module:
    """An int8 copy of ``model`` (in eval mode); the fp32 model is untouched.

    ``fp32_compute``: Linears stored int8 but multiplied in fp32; ``row_scaled``: int8 Linears
    whose activations get one scale per row (token) instead of one per call (``config.activations
    = "row"`` does it for all). Both are for the Linears per-call int8 hurts most (see
    sora.compress.sensitivity)."""
    config = config or QuantizeConfig()
    big = _int8_gemms(model, config, fp32_compute=fp32_compute, row_scaled=row_scaled)
    model = copy.deepcopy(model).eval()
    quantization = _quantization(model, config, big, fp32_compute=fp32_compute, row_scaled=row_scaled)
    for name, module in _int8_modules(model, quantization).items():
        model.set_submodule(name, module)
    set_config(model, model.config.model_copy(update={"quantization": quantization}))
    return model


def _int8_gemms(model: nn.Module, config: QuantizeConfig, *, fp32_compute, row_scaled) -> set[str]:
    """The Linears that would run the int8 GEMM, once the model is one quantization can take and the
    Linears named for fp32 maths or per-row scales are among them."""
    if not isinstance(getattr(model, "config", None), ModelConfig):
        raise SoraError("quantization needs a Sora model (built with sora.models.build_model or load_model)")
    if is_quantized(model):
        raise SoraError("the model is already quantized")
    if any(name.endswith("lora_A") for name, _ in model.named_parameters()):
        raise SoraError("merge the LoRA adapters before quantizing (sora.compress.lora.merge)")
    big = set(int8_linears(model, config))
    for what, names in (("fp32_compute", fp32_compute), ("row_scaled", row_scaled)):
        unknown = set(names) - big
        if unknown:
            raise SoraError(f"{what}: {', '.join(sorted(unknown))} is not a Linear that would run in int8")
    return big


def _quantization(model: nn.Module, config: QuantizeConfig, big: set[str], *, fp32_compute, row_scaled) -> dict:
    """``config.quantization``: which embeddings and Linears become int8, how each Linear multiplies,
    and which of them share an embedding's table (tied LM heads, a seq2seq decoder's embedding)."""
    owners = {}  # id(weight) -> embedding path, to keep tied LM heads tied
    embeddings, tied = [], {}
    for name, module in model.named_modules():
        if config.embeddings and isinstance(module, TokenEmbedding) and id(module.weight) not in owners:
            owners[id(module.weight)] = name
            embeddings.append(name)
        elif isinstance(module, TokenEmbedding) and id(module.weight) in owners:
            tied[name] = owners[id(module.weight)]  # seq2seq: the decoder shares the encoder's table
    linears, small = [], []  # int8 GEMM; int8 storage with fp32 maths
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not module.weight.numel():
            continue
        if name in big and name not in fp32_compute:
            linears.append(name)
        elif config.small_linears == "int8_storage" or name in fp32_compute:
            small.append(name)
        else:
            continue
        if id(module.weight) in owners:
            tied[name] = owners[id(module.weight)]
    return {
        "method": INT8_METHOD,
        "weights": "int8 symmetric, one scale per output row",
        "activations": "uint8, computed per call (8 bits with VNNI, 7 without): one scale per tensor, "
        "or per row for linear_row_scaled",
        "min_weights": config.min_weights,
        "embeddings": embeddings,
        "linear": linears,
        "linear_row_scaled": linears if config.activations == "row" else [n for n in linears if n in row_scaled],
        "linear_fp32_compute": small,
        "tied": tied,
    }


def _int8_modules(model: nn.Module, quantization: dict) -> dict[str, nn.Module]:
    """The int8 module for every name ``quantization`` lists; a tied one shares its embedding's int8
    table and scales (one copy in memory and on disk)."""
    tied = quantization["tied"]
    new_modules = {}
    for name in quantization["embeddings"]:
        new_modules[name] = Int8Embedding.from_embedding(model.get_submodule(name))
    for name in quantization["linear"] + quantization["linear_fp32_compute"]:
        linear, compute, source = model.get_submodule(name), linear_compute(quantization, name), tied.get(name)
        if source is not None:
            q = Int8Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, compute=compute)
            q.weight, q.scale = new_modules[source].weight, new_modules[source].scale
            if linear.bias is not None:
                q.bias = linear.bias.detach().float().clone()
            new_modules[name] = q
        else:
            new_modules[name] = Int8Linear.from_linear(linear, compute=compute)
    for name, source in tied.items():
        if name not in new_modules:  # a tied embedding (not a Linear): the same int8 module
            new_modules[name] = new_modules[source]
    return new_modules


def set_config(model: nn.Module, config: ModelConfig) -> None:
    """Every stack of an assembly holds the config: update them all together."""
    for module in model.modules():
        if isinstance(getattr(module, "config", None), ModelConfig):
            module.config = config


def save_quantized(model: nn.Module, out_dir: str | Path, *, tokenizer=None, meta: dict | None = None) -> Path:
    return save_model(model, out_dir, tokenizer=tokenizer, meta=meta, write_weights=write_int8)
