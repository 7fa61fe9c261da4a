"""Reading a local Hugging Face model folder: ``config.json`` and its weights, without transformers.

Weights come from ``model.safetensors`` (or its sharded index), or else from ``pytorch_model.bin``
loaded with ``torch.load(weights_only=True)``, which refuses anything but tensors: nothing is
unpickled. A ``Checkpoint`` hands weights out by name and remembers which it handed out, so an
importer can report exactly which weights it did not carry over.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from sora.errors import SoraError

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise SoraError(f"{folder}: not a Hugging Face model folder (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SoraError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(config, dict):
        raise SoraError(f"{path}: expected a JSON object")
    return config


def read_json(path: Path) -> dict | None:
    """An optional JSON side file (tokenizer_config.json, 1_Pooling/config.json); None if absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_weights(folder: Path) -> tuple[dict[str, Tensor], str]:
    """All tensors of the folder's checkpoint, and the file name they came from."""
    if (folder / SAFETENSORS).is_file():
        return _safetensors(folder / SAFETENSORS), SAFETENSORS
    if (folder / SAFETENSORS_INDEX).is_file():
        return _sharded(folder, SAFETENSORS_INDEX, _safetensors), SAFETENSORS_INDEX
    if (folder / BIN).is_file():
        return _torch_bin(folder / BIN), BIN
    if (folder / BIN_INDEX).is_file():
        return _sharded(folder, BIN_INDEX, _torch_bin), BIN_INDEX
    raise SoraError(f"{folder}: no weights (looked for {SAFETENSORS}, {SAFETENSORS_INDEX}, {BIN}, {BIN_INDEX})")


def _safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise SoraError(f"{path}: cannot read safetensors ({e})") from None


def _torch_bin(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled objects other than tensors
        raise SoraError(f"{path}: cannot read it as plain tensors with weights_only=True ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise SoraError(f"{path}: expected a flat dict of tensors")
    return state


def _sharded(folder: Path, index_name: str, read) -> dict[str, Tensor]:
    index = read_json(folder / index_name)
    if index is None or not isinstance(index.get("weight_map"), dict):
        raise SoraError(f"{folder / index_name}: expected a JSON object with a 'weight_map'")
    state: dict[str, Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        if not (folder / shard).is_file():
            raise SoraError(f"{folder / index_name}: lists shard {shard!r}, which is missing")
        state.update(read(folder / shard))
    return state


class Checkpoint:
    """A Hugging Face state dict handed out by name.

    Names are given without the task model's prefix (``bert.``, ``transformer.``): the prefix is
    found once, since base models are saved without it and task models with it.
    """

    def __init__(self, state: dict[str, Tensor], prefix: str, source: str, config_source: str = "config.json"):
        self.source, self.config_source = source, config_source  # for messages: the weights file, config.json
        self.state = {_legacy_norm_name(k): v for k, v in state.items()}
        self.prefix = prefix if any(k.startswith(prefix) for k in self.state) else ""
        self.taken: set[str] = set()

    def has(self, name: str, *, top: bool = False) -> bool:
        return self._key(name, top) in self.state

    def take(self, name: str, *, top: bool = False) -> Tensor:
        """The tensor ``name`` (``top``: a task head's weight, stored without the body prefix)."""
        key = self._key(name, top)
        if key not in self.state:
            raise SoraError(f"{self.source}: missing weight {key!r}")
        self.taken.add(key)
        return self.state[key]

    def left(self) -> list[str]:
        """Weights nobody took: reported as not carried over."""
        return sorted(k for k in self.state if k not in self.taken)

    def _key(self, name: str, top: bool) -> str:
        return name if top else self.prefix + name


def _legacy_norm_name(key: str) -> str:
    # Checkpoints from the TensorFlow era call LayerNorm parameters gamma and beta.
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key
