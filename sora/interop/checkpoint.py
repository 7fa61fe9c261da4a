"""Reading a local Hugging Face model folder: ``config.json`` and its weights, without transformers.

Weights come from ``model.safetensors`` (or its sharded index), or else from ``pytorch_model.bin``
loaded with ``torch.load(weights_only=True)``, which refuses anything but tensors: nothing is
unpickled. A ``Checkpoint`` hands weights out by name and remembers which it handed out, so an
importer can report exactly which weights it did not carry over.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch
from torch import Tensor

from sora.configio import read_json_file
from sora.errors import SoraError, first_line
from sora.models.folder import read_safetensors
from sora.paths import existing_file

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def read_config(folder: Path) -> dict:
    path = existing_file(folder, "config.json")
    if path is None:
        raise SoraError(f"{folder}: not a Hugging Face model folder (no config.json)")
    return read_json_file(path, "config")


def read_side_json(folder: Path, name: str) -> dict | None:
    """An optional JSON side file of a model folder (tokenizer_config.json, 1_Pooling/config.json): None when
    absent; one line naming it when it is damaged or lies outside the folder."""
    path = existing_file(folder, name)
    return None if path is None else read_json_file(path)


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is absent or unreadable (for probing what a folder is)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError: not UTF-8, not JSON
        return None
    return data if isinstance(data, dict) else None


def read_weights(folder: Path) -> tuple[dict[str, Tensor], str]:
    """All tensors of the folder's checkpoint, and the file name they came from."""
    for name, index, read in (
        (SAFETENSORS, False, read_safetensors),
        (SAFETENSORS_INDEX, True, read_safetensors),
        (BIN, False, _torch_bin),
        (BIN_INDEX, True, _torch_bin),
    ):
        path = existing_file(folder, name)
        if path is not None:
            return (_sharded(folder, name, read) if index else read(path)), name
    raise SoraError(f"{folder}: no weights (looked for {SAFETENSORS}, {SAFETENSORS_INDEX}, {BIN}, {BIN_INDEX})")


def _torch_bin(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only: the pickle asks for something other than tensors
        raise SoraError(
            f"{path}: refused: {refusal_reason(e)}; Sora reads only plain tensors from a pickle and "
            f"never runs the code or builds the objects one names (use the model's {SAFETENSORS} "
            "if it has one)"
        ) from None
    except Exception as e:  # noqa: BLE001  a truncated zip, garbage bytes: torch raises plain errors
        raise SoraError(
            f"{path}: cannot read it as a PyTorch checkpoint ({first_line(e)}); it is truncated or damaged"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise SoraError(f"{path}: expected a flat dict of named tensors")
    return state


# What torch's weights_only unpickler says it refused, without its advice to turn the check off.
REFUSALS = (
    (
        re.compile(r"unsupported GLOBAL (\S+) whose module (\S+) is blocked"),
        "unsupported GLOBAL {0} (module {1} is blocked)",
    ),
    (re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global"), "unsupported GLOBAL {0}"),
    (re.compile(r"Unsupported operand (\d+)"), "unsupported pickle opcode {0}"),
    (re.compile(r"WeightsUnpickler error: *(\S.*)"), "{0}"),
)


def refusal_reason(e: Exception) -> str:
    """``unsupported GLOBAL posix.system (module posix is blocked)`` from torch's long weights_only message."""
    text = str(e)
    for pattern, template in REFUSALS:
        match = pattern.search(text)
        if match:
            return template.format(*match.groups()).rstrip(".")[:200]
    return "the pickle holds something other than tensors"


def _sharded(folder: Path, index_name: str, read) -> dict[str, Tensor]:
    index = read_side_json(folder, index_name) or {}
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise SoraError(f"{folder / index_name}: expected a JSON object with a 'weight_map' of tensor names to files")
    state: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        path = existing_file(folder, shard)
        if path is None:
            raise SoraError(f"{folder / index_name}: lists shard {shard!r}, which is missing")
        state.update(read(path))
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
        self._origin: dict[int, str] = {}  # id(tensor) -> its name in the file, for messages

    def has(self, name: str, *, top: bool = False) -> bool:
        return self._key(name, top) in self.state

    def take(self, name: str, *, top: bool = False) -> Tensor:
        """The tensor ``name`` (``top``: a task head's weight, stored without the body prefix)."""
        key = self._key(name, top)
        if key not in self.state:
            raise SoraError(f"{self.source}: missing weight {key!r}")
        self.taken.add(key)
        self._origin[id(self.state[key])] = key
        return self.state[key]

    def file_names(self, state: dict[str, Tensor]) -> dict[str, str]:
        """Sora name -> name in the file, for the tensors of ``state`` taken unchanged."""
        return {name: self._origin[id(t)] for name, t in state.items() if id(t) in self._origin}

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
