"""The model folder: ``config.json``, ``model.safetensors``, optional ``tokenizer.json`` and ``meta.json``.

Saving writes a sibling temporary folder and renames it into place, so a crash never leaves a
half-written model. Loading reads JSON and safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from safetensors.torch import load_model as load_safetensors_into
from safetensors.torch import save_model as save_safetensors_from
from torch import nn

from sora.atomic import replace_dir
from sora.errors import SoraError
from sora.models.build import build_model
from sora.models.config import ModelConfig

CONFIG, WEIGHTS, TOKENIZER, META = "config.json", "model.safetensors", "tokenizer.json", "meta.json"

# Builders for models whose weights are stored differently (e.g. int8): keyed by
# config.quantization["method"], registered by sora.compress so models stay independent of it.
QUANTIZED_LOADERS: dict[str, Callable[[ModelConfig, Path], nn.Module]] = {}


def save_model(model: nn.Module, out_dir: str | Path, *, tokenizer=None, meta: dict[str, Any] | None = None,
               write_weights: Callable[[nn.Module, Path], None] | None = None) -> Path:
    """Write ``model`` (and its tokenizer and metadata) to ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / CONFIG).write_text(json.dumps(model.config.model_dump(mode="json"), indent=2) + "\n")
        (write_weights or _write_safetensors)(model, tmp / WEIGHTS)
        if tokenizer is not None:
            tokenizer.save(str(tmp / TOKENIZER))
        if meta is not None:
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_safetensors(model: nn.Module, path: Path) -> None:
    save_safetensors_from(model, str(path))  # handles tied weights: each stored once


def is_model_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def load_config(model_dir: str | Path) -> ModelConfig:
    from sora.configio import load

    model_dir = Path(model_dir)
    if not is_model_dir(model_dir):
        raise SoraError(f"{model_dir}: not a model folder (needs {CONFIG} and {WEIGHTS})")
    return load(ModelConfig, model_dir / CONFIG)


def load_model(model_dir: str | Path) -> nn.Module:
    """Rebuild the model from its folder alone, in eval mode."""
    model_dir = Path(model_dir)
    config = load_config(model_dir)
    method = (config.quantization or {}).get("method")
    if method:
        if method not in QUANTIZED_LOADERS:
            import sora.compress  # noqa: F401  registers the quantized loaders
        if method not in QUANTIZED_LOADERS:
            raise SoraError(f"{model_dir}/{CONFIG}: unknown quantization method {method!r}")
        model = QUANTIZED_LOADERS[method](config, model_dir)
    else:
        model = build_model(config)
        try:
            missing, unexpected = load_safetensors_into(model, str(model_dir / WEIGHTS), strict=False)
        except (RuntimeError, OSError) as e:  # shape mismatch or a damaged file
            raise SoraError(f"{model_dir}/{WEIGHTS}: does not match {CONFIG} ({str(e).splitlines()[0][:300]})") from None
        if missing or unexpected:
            raise SoraError(f"{model_dir}/{WEIGHTS}: does not match {CONFIG} "
                            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return model.eval()


def load_tokenizer(model_dir: str | Path):
    """The folder's tokenizer (a ``tokenizers.Tokenizer``), or None if it has none."""
    path = Path(model_dir) / TOKENIZER
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def load_meta(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / META
    return json.loads(path.read_text()) if path.is_file() else {}
