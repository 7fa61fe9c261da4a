"""An int8 model's layout: which modules ``config.quantization`` makes int8, and the tensors its folder holds.

``sora.compress.quantize`` chooses which Linears and embeddings become int8 (the procedure) and
records the choice in ``config.quantization``; this module turns that record back into a model
(``int8_skeleton``) and says which tensors its ``model.safetensors`` holds, so the model folder
loads an int8 model with no knowledge of compression. A module tied to another (an LM head that
shares the embedding's table) is stored once, under its source's name, and shared again on load.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor, nn

from sora.errors import SoraError
from sora.particles.int8 import Int8Embedding, Int8Linear

INT8_METHOD = "int8_dynamic"  # config.quantization["method"]
TIED_TENSORS = ("weight", "scale")  # what a tied int8 module shares with its source
REQUIRED_KEYS = ("embeddings", "linear", "tied")


def linear_compute(quantization: dict, name: str) -> str:
    """How an int8 Linear named in ``config.quantization`` multiplies (see Int8Linear)."""
    if name in quantization.get("linear_row_scaled", ()):
        return "int8_row"
    return "int8" if name in quantization["linear"] else "fp32"


def int8_skeleton(model: nn.Module, quantization: dict, where: str) -> None:
    """Swap the modules ``quantization`` names for empty int8 ones, in place; their tensors load next.

    ``where`` names the config in errors: a record that does not fit the architecture is one line."""
    for key in REQUIRED_KEYS:
        if key not in quantization:
            raise SoraError(f"{where}: missing key {key!r}")
    try:
        for name in quantization["embeddings"]:
            model.set_submodule(name, Int8Embedding(*model.get_submodule(name).weight.shape))
        small = quantization.get("linear_fp32_compute", [])
        stray = set(quantization.get("linear_row_scaled", [])) - set(quantization["linear"])
        if stray:
            raise SoraError(f"{where}.linear_row_scaled: {', '.join(sorted(stray))} is not in its 'linear' list")
        for name in quantization["linear"] + small:
            model.set_submodule(name, _empty_int8_linear(model.get_submodule(name), quantization, name, where))
        for name, source in quantization["tied"].items():
            if name not in quantization["linear"] and name not in small:  # a tied embedding: the same module
                model.set_submodule(name, model.get_submodule(source))
    except AttributeError as e:
        raise SoraError(f"{where}: names a module this architecture does not have ({e})") from None


def _empty_int8_linear(old: nn.Module, quantization: dict, name: str, where: str) -> Int8Linear:
    if not isinstance(old, nn.Linear):
        raise SoraError(f"{where}.linear: {name!r} is not a Linear in this architecture")
    return Int8Linear(
        old.in_features, old.out_features, bias=old.bias is not None, compute=linear_compute(quantization, name)
    )


def with_tied(state: dict[str, Tensor], quantization: dict) -> dict[str, Tensor]:
    """``state`` (as read from the folder) with each tied module's tensors filled in from its source."""
    for name, source in quantization["tied"].items():
        for part in TIED_TENSORS:
            if f"{source}.{part}" in state:
                state.setdefault(f"{name}.{part}", state[f"{source}.{part}"])
    return state


def share_tied(model: nn.Module, quantization: dict) -> None:
    """Make each tied module share its source's tensors again (one copy in memory, as when saved)."""
    for name, source in quantization["tied"].items():
        target, src = model.get_submodule(name), model.get_submodule(source)
        if target is not src:
            target.weight, target.scale = src.weight, src.scale


def write_int8(model: nn.Module, path: Path) -> None:
    """``save_model``'s weight writer for int8 models: each tensor once (tied copies are left out)."""
    tied = {f"{name}.{part}" for name in (model.config.quantization or {}).get("tied", {}) for part in TIED_TENSORS}
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
    # One metadata key: safetensors writes a header's keys in hash order, so two keys would make
    # the same model's file differ in bytes from run to run.
    save_file(state, str(path), metadata={"quantization": INT8_METHOD})
