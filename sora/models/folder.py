"""The model folder: ``config.json``, ``model.safetensors``, optional ``tokenizer.json`` and ``meta.json``.

Saving writes a hidden sibling folder and renames it into place (``sora.atomic.staged_dir``), so a
crash never leaves a half-written model. Loading reads JSON and safetensors only: nothing is unpickled,
nothing is read from outside the folder (``sora.paths``), and a damaged file (missing, truncated,
garbage, from another model) is one error naming it, whichever command reads the folder. An int8
model's folder loads here too: ``config.quantization`` says which modules are int8 particles
(``sora.models.quantized``), so no compression code is needed to read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from safetensors.torch import load_file
from safetensors.torch import save_model as save_safetensors_from
from tokenizers import Tokenizer
from torch import Tensor, nn

from sora.atomic import staged_dir
from sora.configio import load, read_json_file
from sora.errors import SoraError, first_line
from sora.models.adapters import ADAPTER_JSON, ADAPTER_WEIGHTS, adapted_state
from sora.models.build import build_within_memory
from sora.models.checks import require_finite
from sora.models.config import ModelConfig
from sora.models.quantized import INT8_METHOD, int8_skeleton, share_tied, with_tied
from sora.models.stack import Stack
from sora.paths import existing_file

CONFIG, WEIGHTS, TOKENIZER, META = "config.json", "model.safetensors", "tokenizer.json", "meta.json"


def save_model(
    model: nn.Module,
    out_dir: str | Path,
    *,
    tokenizer=None,
    meta: dict[str, Any] | None = None,
    write_weights: Callable[[nn.Module, Path], None] | None = None,
) -> Path:
    """Write ``model`` (and its tokenizer and metadata) to ``out_dir`` atomically, replacing what was there."""
    with staged_dir(out_dir) as tmp:
        write_model_files(model, tmp, tokenizer=tokenizer, meta=meta, write_weights=write_weights)
    return Path(out_dir)


def write_model_files(
    model: nn.Module,
    folder: Path,
    *,
    tokenizer=None,
    meta: dict[str, Any] | None = None,
    write_weights: Callable[[nn.Module, Path], None] | None = None,
) -> None:
    """The model folder's files, written into an existing (staging) folder."""
    (folder / CONFIG).write_text(json.dumps(model.config.model_dump(mode="json"), indent=2) + "\n")
    (write_weights or _write_safetensors)(model, folder / WEIGHTS)
    if tokenizer is not None:
        tokenizer.save(str(folder / TOKENIZER))
    if meta is not None:
        (folder / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")


def _write_safetensors(model: nn.Module, path: Path) -> None:
    for module in model.modules():  # weights as stored for training (inference may have stored them column-major)
        if isinstance(module, Stack):
            module.set_inference_layout(False)
    save_safetensors_from(model, str(path))  # handles tied weights: each stored once


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` looks like a model folder, to choose how to read an input (a Sora folder or a
    Hugging Face name); a command that needs a model folder checks it with ``require_model_dir``. An adapter
    folder (sora.models.adapters) is one: it reads as its base plus its adapters."""
    path = Path(path)
    return (path / CONFIG).is_file() and ((path / WEIGHTS).is_file() or (path / ADAPTER_WEIGHTS).is_file())


# -- loading: every way a folder can be damaged (missing, truncated, garbage, a link out of the folder,
# a file from another model) is one SoraError naming the file, whichever command reads it.


def load_config(model_dir: str | Path) -> ModelConfig:
    model_dir = Path(model_dir)
    return load(ModelConfig, _required_files(model_dir)[0])


def _required_files(model_dir: Path) -> tuple[Path, Path]:
    """config.json and model.safetensors: regular files inside the folder."""
    if not model_dir.is_dir():
        raise SoraError(f"{model_dir}: not a model folder (needs {CONFIG} and {WEIGHTS})")
    config, weights = existing_file(model_dir, CONFIG), existing_file(model_dir, WEIGHTS)
    if weights is None and existing_file(model_dir, ADAPTER_JSON) is not None:  # an adapter folder
        weights = existing_file(model_dir, ADAPTER_WEIGHTS)
    missing = [name for name, path in ((CONFIG, config), (WEIGHTS, weights)) if path is None]
    if missing:
        raise SoraError(
            f"{model_dir}: not a model folder (needs {CONFIG} and {WEIGHTS}; "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing)"
        )
    return config, weights


def require_model_dir(model_dir: str | Path) -> Path:
    """The one check of every command that reads a model folder, with the message ``load_model`` gives:
    a command fails on a wrong path before it starts its work."""
    model_dir = Path(model_dir)
    _required_files(model_dir)
    return model_dir


def load_model(model_dir: str | Path) -> nn.Module:
    """Rebuild the model from its folder alone, in eval mode."""
    model_dir = Path(model_dir)
    config = load_config(model_dir)
    method = (config.quantization or {}).get("method")
    if method and method != INT8_METHOD:
        raise SoraError(f"{model_dir}/{CONFIG}: unknown quantization method {method!r}")
    model = build_within_memory(config, model_dir / CONFIG)
    if method:
        _load_int8(model, config.quantization, model_dir)
    else:
        load_weights(model, read_weights(model_dir), model_dir / WEIGHTS)
    require_finite(model, model_dir / WEIGHTS)  # NaN weights would still give a plausible-looking result
    return model.eval()


def _load_int8(model: nn.Module, quantization: dict, model_dir: Path) -> None:
    """int8 modules where ``config.quantization`` puts them (sora.models.quantized), then their tensors."""
    int8_skeleton(model, quantization, f"{model_dir}/{CONFIG}: quantization")
    load_weights(model, with_tied(read_weights(model_dir), quantization), model_dir / WEIGHTS)
    share_tied(model, quantization)


def read_weights(model_dir: str | Path) -> dict[str, Tensor]:
    """Every tensor of the folder's ``model.safetensors`` (an adapter folder: its base's and its own)."""
    weights = _required_files(Path(model_dir))[1]
    if weights.name == ADAPTER_WEIGHTS:
        return adapted_state(Path(model_dir), read_safetensors)
    return read_safetensors(weights)


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a safetensors file; a truncated or garbage file is one line naming it."""
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001  safetensors' parser raises its own and plain errors on bad bytes
        raise SoraError(
            f"{path}: not a readable safetensors file ({first_line(e)}); it is truncated or damaged"
        ) from None


def load_weights(
    model: nn.Module,
    state: dict[str, Tensor],
    source: str | Path,
    *,
    optional: tuple[str, ...] = (),
    file_names: dict[str, str] | None = None,
) -> None:
    """Copy ``state`` into ``model``, naming the first tensor whose name, shape or kind the config does not expect.

    ``optional``: name endings the state may lack (buffers that start as ones); ``file_names``: the name a
    tensor has in the file, when the state was renamed from another layout (an import).
    """
    params = model.state_dict(keep_vars=True)
    for name, want in params.items():  # in the model's order: the first mismatch is the one named
        tensor = state.get(name)
        if tensor is not None and (tensor.shape, tensor.is_floating_point()) != (want.shape, want.is_floating_point()):
            named = f"'{file_names[name]}' (Sora's '{name}')" if name in (file_names or {}) else f"'{name}'"
            raise SoraError(
                f"{source}: does not match {CONFIG}: tensor {named} is {_describe(tensor)} in the file, "
                f"{_describe(want)} in the model {CONFIG} describes"
            )
    present = {id(params[name]) for name in state if name in params}  # tied weights are stored once
    missing = [
        name for name, p in params.items() if name not in state and id(p) not in present and not name.endswith(optional)
    ]
    unexpected = [name for name in state if name not in params]
    if missing or unexpected:
        raise SoraError(
            f"{source}: does not match {CONFIG}: "
            + "; ".join(
                f"{what} {_names(names)}" for what, names in (("missing", missing), ("unexpected", unexpected)) if names
            )
        )
    model.load_state_dict(state, strict=False)


def _describe(tensor: Tensor) -> str:
    return f"{str(tensor.dtype).removeprefix('torch.')} {tuple(tensor.shape)}"


def _names(names: list[str], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(f"'{n}'" for n in names[:shown]) + more


def load_tokenizer(model_dir: str | Path):
    """The folder's tokenizer (a ``tokenizers.Tokenizer``), or None if it has none."""
    model_dir = Path(model_dir)
    path = existing_file(model_dir, TOKENIZER)
    if path is None:
        return None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001  the Rust side raises plain Exceptions
        raise SoraError(f"{path}: not a readable tokenizer ({first_line(e)}); it is truncated or damaged") from None
    _check_vocabulary(model_dir, tokenizer, path)
    return tokenizer


def _check_vocabulary(model_dir: Path, tokenizer, path: Path) -> None:
    """A tokenizer whose ids run past the model's embedding belongs to another model."""
    if existing_file(model_dir, CONFIG) is None:
        return  # a checkpoint's tokenizer, without a config beside it
    vocab_size = load_config(model_dir).vocab_size
    n = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab_size is not None and n > vocab_size:
        raise SoraError(
            f"{path}: has {n:,} tokens but {CONFIG} gives the model a vocabulary of {vocab_size:,}: "
            "this tokenizer belongs to another model"
        )


# meta.json values other code reads as a list or an object (dotted: inside another object)
META_TYPES = {
    "labels": list,
    "source": dict,
    "source.config": dict,
    "tokenizer": dict,
    "tokenizer.hf_files": dict,
    "sentence_embedding": dict,
    "image_preprocessing": dict,
    "preprocessing": dict,
    "token_types": dict,
}


def load_meta(model_dir: str | Path) -> dict[str, Any]:
    path = existing_file(model_dir, META)
    if path is None:
        return {}
    meta = read_json_file(path, META)
    for key, kind in META_TYPES.items():
        value = _lookup(meta, key)
        if value is not None and not isinstance(value, kind):
            raise SoraError(
                f"{path}: {key}: expected {'a list' if kind is list else 'an object'}, got {type(value).__name__}"
            )
    return meta


def _lookup(data: dict, dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``, or None where a part is missing or not an object."""
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data
