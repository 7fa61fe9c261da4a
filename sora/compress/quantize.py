"""int8 dynamic quantization of a whole model, and its model folder.

Which path: measured on this 2-core CPU (docs/compression.md, bench/compress.py), PyTorch's
dynamic int8 GEMM (what ``torch.ao.quantization.quantize_dynamic`` uses; ``int8.py`` picks its
kernel) beat fp32 on BERT-sized matrices at batch 1 and 32, while torchao's
``Int8DynamicActivationInt8WeightConfig`` in eager mode was slower than fp32 at both. On small
matrices int8 loses to fp32: quantizing the activations costs more than the GEMM saves. So only a
Linear with at least ``min_weights`` weights and ``min_side`` inputs and outputs runs in int8;
smaller ones are stored int8 too but multiply in fp32 with their dequantized weights. The model is
then not slower than fp32 at any batch size, and about 4x smaller on disk either way.

The folder: ``model.safetensors`` holds int8 weights and fp32 per-row scales (``*.weight``,
``*.scale``) beside the fp32 rest; ``config.quantization`` lists which modules are int8 and which
int8 Linear shares its matrix with an embedding (tied LM heads are stored once). Loading builds
the fp32 skeleton from the config, swaps those modules for int8 ones and loads the tensors.
"""

from __future__ import annotations

import copy
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from sora.compress.config import QuantizeConfig
from sora.compress.int8 import Int8Embedding, Int8Linear
from sora.errors import SoraError
from sora.models import ModelConfig, build_model, save_model
from sora.models.folder import CONFIG, QUANTIZED_LOADERS, WEIGHTS, load_weights, read_weights
from sora.particles import MultiHeadAttention, TokenEmbedding

METHOD = "int8_dynamic"


def is_quantized(model: nn.Module) -> bool:
    return bool((getattr(model, "config", None) and model.config.quantization) or
                any(isinstance(m, (Int8Linear, Int8Embedding)) for m in model.modules()))


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
    return [name for name, (rows, cols) in gemm.items()
            if rows * cols and rows * cols >= config.min_weights and min(rows, cols) >= config.min_side]


def quantize_model(model: nn.Module, config: QuantizeConfig | None = None, *,
                   fp32_compute: list[str] | tuple[str, ...] = (),
                   row_scaled: list[str] | tuple[str, ...] = ()) -> nn.Module:
    """An int8 copy of ``model`` (in eval mode); the fp32 model is untouched.

    ``fp32_compute``: Linears stored int8 but multiplied in fp32; ``row_scaled``: int8 Linears
    whose activations get one scale per row (token) instead of one per call (``config.activations
    = "row"`` does it for all). Both are for the Linears per-call int8 hurts most (see
    sora.compress.sensitivity)."""
    config = config or QuantizeConfig()
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
    model = copy.deepcopy(model).eval()
    owners = {}  # id(weight) -> embedding path, to keep tied LM heads tied
    embeddings, tied = [], {}
    for name, module in list(model.named_modules()):
        if config.embeddings and isinstance(module, TokenEmbedding) and id(module.weight) not in owners:
            owners[id(module.weight)] = name
            embeddings.append(name)
        elif isinstance(module, TokenEmbedding) and id(module.weight) in owners:
            tied[name] = owners[id(module.weight)]  # seq2seq: the decoder shares the encoder's table
    linears, small = [], []  # int8 GEMM; int8 storage with fp32 maths
    for name, module in list(model.named_modules()):
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
    quantization = {
        "method": METHOD,
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
    new_modules = {}
    for name in embeddings:
        new_modules[name] = Int8Embedding.from_embedding(model.get_submodule(name))
    for name in linears + small:
        compute = _compute(quantization, name)
        source = tied.get(name)
        if source is not None:  # share the embedding's int8 table and scales: one copy in memory and on disk
            linear = model.get_submodule(name)
            q = Int8Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, compute=compute)
            q.weight, q.scale = new_modules[source].weight, new_modules[source].scale
            if linear.bias is not None:
                q.bias = linear.bias.detach().float().clone()
            new_modules[name] = q
        else:
            new_modules[name] = Int8Linear.from_linear(model.get_submodule(name), compute=compute)
    for name, source in tied.items():
        if name not in new_modules:  # a tied embedding (not a Linear): the same int8 module
            new_modules[name] = new_modules[source]
    for name, module in new_modules.items():
        model.set_submodule(name, module)
    set_config(model, model.config.model_copy(update={"quantization": quantization}))
    return model


def _compute(quantization: dict, name: str) -> str:
    """How an int8 Linear named in ``config.quantization`` multiplies (see Int8Linear)."""
    if name in quantization.get("linear_row_scaled", ()):
        return "int8_row"
    return "int8" if name in quantization["linear"] else "fp32"


def set_config(model: nn.Module, config: ModelConfig) -> None:
    """Every stack of an assembly holds the config: update them all together."""
    for module in model.modules():
        if isinstance(getattr(module, "config", None), ModelConfig):
            module.config = config


def write_int8(model: nn.Module, path: Path) -> None:
    """``save_model``'s weight writer for int8 models: each tensor once (tied copies are left out)."""
    tied = set()
    for name, source in (model.config.quantization or {}).get("tied", {}).items():
        tied |= {f"{name}.weight", f"{name}.scale"}
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
    # One metadata key: safetensors writes a header's keys in hash order, so two keys would make
    # the same model's file differ in bytes from run to run.
    save_file(state, str(path), metadata={"quantization": METHOD})


def save_quantized(model: nn.Module, out_dir: str | Path, *, tokenizer=None, meta: dict | None = None) -> Path:
    return save_model(model, out_dir, tokenizer=tokenizer, meta=meta, write_weights=write_int8)


def load_int8(config: ModelConfig, model_dir: Path) -> nn.Module:
    """Rebuild an int8 model from its folder: fp32 skeleton, int8 modules swapped in, tensors loaded."""
    q = config.quantization or {}
    where = f"{model_dir}/{CONFIG}: quantization"
    for key in ("embeddings", "linear", "tied"):
        if key not in q:
            raise SoraError(f"{where}: missing key {key!r}")
    model = build_model(config)
    try:
        for name in q["embeddings"]:
            old = model.get_submodule(name)
            model.set_submodule(name, Int8Embedding(*old.weight.shape))
        small = q.get("linear_fp32_compute", [])
        stray = set(q.get("linear_row_scaled", [])) - set(q["linear"])
        if stray:
            raise SoraError(f"{where}.linear_row_scaled: {', '.join(sorted(stray))} is not in its 'linear' list")
        for name in q["linear"] + small:
            old = model.get_submodule(name)
            if not isinstance(old, nn.Linear):
                raise SoraError(f"{where}.linear: {name!r} is not a Linear in this architecture")
            model.set_submodule(name, Int8Linear(old.in_features, old.out_features, bias=old.bias is not None,
                                                 compute=_compute(q, name)))
        for name, source in q["tied"].items():
            if name not in q["linear"] and name not in small:
                model.set_submodule(name, model.get_submodule(source))
    except AttributeError as e:
        raise SoraError(f"{where}: names a module this architecture does not have ({e})") from None
    state = read_weights(model_dir)
    for name, source in q["tied"].items():
        for part in ("weight", "scale"):
            if f"{source}.{part}" in state:
                state.setdefault(f"{name}.{part}", state[f"{source}.{part}"])
    load_weights(model, state, model_dir / WEIGHTS)
    for name, source in q["tied"].items():  # share memory again, as when it was saved
        target, src = model.get_submodule(name), model.get_submodule(source)
        if target is not src:
            target.weight, target.scale = src.weight, src.scale
    return model.eval()


QUANTIZED_LOADERS[METHOD] = load_int8
