"""Where ``sora analyze`` gets its batches: a recipe or data config (sora.data), or a tensors file.

- a recipe (``model:`` + ``data:``) or a data config YAML/JSON: prepared with ``sora.data`` using
  the *model's* tokenizer, so token ids mean what they meant in training; the recipe's
  ``analyze:`` section, if any, becomes the analysis settings;
- a ``.safetensors`` file of batch tensors (the batch contract's keys, examples along the first
  dimension, e.g. ``inputs``, ``valid``, ``labels``): useful for images, audio, or data made
  elsewhere; it is cut into batches in order, once every id, label, mask and length in it is one
  the model can take.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from sora.configio import Section, read_section
from sora.data import prepare_data, read_data_config
from sora.data.splits import unusable_split
from sora.errors import SoraError
from sora.models.checks import require_fits
from sora.models.folder import read_safetensors
from sora.tasks import IGNORE, check_batch, infer_task


@dataclass
class AnalysisData:
    batches: Callable[[], Iterable[dict[str, Tensor]]]
    task: str | None
    labels: list[str] | None
    name: str


def recipe_analyze_section(path: str | Path) -> Section | None:
    """The ``analyze:`` section of a recipe file (None for data configs and tensor files)."""
    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file():
        return None
    return read_section(path, "analyze", standalone=False)


def load_analysis_data(
    path: str | Path, model: nn.Module, tokenizer, *, split: str, batch_size: int, seed: int = 0
) -> AnalysisData:
    path = Path(path)
    if not path.is_file():
        raise SoraError(f"{path}: no such data file (give a recipe, a data config, or a .safetensors batch file)")
    if path.suffix == ".safetensors":
        return _tensor_file(path, batch_size, model)
    return _data_config(path, model, tokenizer, split=split, batch_size=batch_size, seed=seed)


def _tensor_file(path: Path, batch_size: int, model: nn.Module) -> AnalysisData:
    tensors = read_safetensors(path)
    if not tensors:
        raise SoraError(f"{path}: holds no tensors")
    sizes = {k: v.shape[0] if v.dim() else None for k, v in tensors.items()}
    n = next(iter(sizes.values()))
    if n is None or any(s != n for s in sizes.values()):
        raise SoraError(f"{path}: every tensor needs the same number of examples along dim 0 (got {sizes})")
    tensors = checked_batch_tensors(path, tensors, model)

    def batches():
        for start in range(0, n, batch_size):
            yield {k: v[start : start + batch_size] for k, v in tensors.items()}

    return AnalysisData(batches, None, None, path.name)


# -- a batch file's tensors against the model: ids, labels and lengths it can take -------------------------

IDS = ("inputs", "src", "tgt_in")  # token ids (text input)
MASKS = {"valid": "inputs", "src_valid": "src", "tgt_valid": "tgt_in"}  # a mask -> the ids it marks
# task -> (key, what its values index: "classes" or "vocabulary", shaped like which key, -100 allowed)
TARGETS = {
    "classification": ("labels", "classes", None, False),
    "token_classification": ("labels", "classes", "inputs", True),
    "lm": ("labels", "vocabulary", "inputs", True),
    "seq2seq": ("tgt_out", "vocabulary", "tgt_in", True),
    "ctc": ("targets", "classes", None, False),
}


def checked_batch_tensors(path: Path, tensors: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """The file's tensors, ids and labels as int64 and masks as bool, once every id, label and length is one the
    model can take (out of range, they fail deep inside the model or quietly index the wrong row)."""
    config = model.config
    task = infer_task(model, tensors)
    if config.arch == "encoder":
        task = "features"
    check_batch(tensors, task, str(path))
    out = dict(tensors)
    for key in IDS:
        if key in out and (key != "inputs" or config.input == "text"):
            out[key] = _indices(path, key, out[key], config.vocab_size, "the vocabulary", ndim=2)
            _length(path, key, out[key].shape[1], config)
    if config.input != "text":
        _signal(path, out["inputs"], config)
    for mask, of in MASKS.items():
        if mask in out:
            out[mask] = _mask(path, mask, out[mask], _mask_shape(out, of, config))
    if task in TARGETS:
        key, space, like, ignore = TARGETS[task]
        size = config.vocab_size if space == "vocabulary" else config.n_classes
        ndim = 1 if task == "classification" else 2
        out[key] = _indices(path, key, out[key], size, f"the model's {space}", ndim=ndim, ignore=ignore)
        if like is not None and out[key].shape != out[like].shape[:2]:
            raise SoraError(
                f"{path}: '{key}' has shape {tuple(out[key].shape)}, '{like}' {tuple(out[like].shape)}; "
                f"a {task} batch needs one {key[:-1] if key.endswith('s') else key} per position"
            )
    if task == "ctc":
        lengths = _indices(
            path, "target_lengths", out["target_lengths"], out["targets"].shape[1] + 1, "the width of 'targets'", ndim=1
        )
        out["target_lengths"] = lengths
    return out


def _indices(path: Path, key: str, x: Tensor, size: int | None, of: str, *, ndim: int, ignore: bool = False) -> Tensor:
    """Integer ids in [0, size) (or -100, ignored, where ``ignore``), as int64."""
    if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
        raise SoraError(f"{path}: '{key}' holds {str(x.dtype).removeprefix('torch.')} values; it needs integer ids")
    if x.dim() != ndim:
        raise SoraError(
            f"{path}: '{key}' has shape {tuple(x.shape)}; expected {ndim} dimension(s) "
            f"({'examples' if ndim == 1 else 'examples, positions'})"
        )
    x = x.long()
    real = x[x != IGNORE] if ignore else x
    if real.numel() and (int(real.min()) < 0 or (size is not None and int(real.max()) >= size)):
        bad = int(real.min()) if int(real.min()) < 0 else int(real.max())
        allowed = f"0..{size - 1}" if size is not None else "0 or more"
        ignored = ", or -100 to ignore" if ignore else ""
        raise SoraError(f"{path}: '{key}' holds {bad}, outside {of} ({allowed}{ignored})")
    return x


def _length(path: Path, key: str, length: int, config) -> None:
    if config.position != "none" and length > config.max_len:
        raise SoraError(
            f"{path}: '{key}' has {length} positions per row, more than the model's max_len {config.max_len}"
        )


def _signal(path: Path, x: Tensor, config) -> None:
    """Images (N, channels, size, size) or spectrograms (N, n_mels, frames), as floats."""
    if not x.is_floating_point():
        raise SoraError(
            f"{path}: 'inputs' holds {str(x.dtype).removeprefix('torch.')} values; {config.input} "
            "input needs floating-point values"
        )
    if config.input == "image":
        want = (config.image.channels, config.image.size, config.image.size)
    else:
        want = (config.audio.n_mels, x.shape[-1] if x.dim() == 3 else -1)
    if tuple(x.shape[1:]) != want:
        raise SoraError(
            f"{path}: 'inputs' has shape {tuple(x.shape)}; the model takes {config.input} input of shape "
            f"(examples, {', '.join(map(str, want))})"
        )


def _mask_shape(tensors: dict[str, Tensor], of: str, config) -> tuple[int, ...]:
    x = tensors[of]
    return (x.shape[0], x.shape[-1]) if of == "inputs" and config.input == "audio" else tuple(x.shape[:2])


def _mask(path: Path, key: str, mask: Tensor, shape: tuple[int, ...]) -> Tensor:
    if tuple(mask.shape) != shape:
        raise SoraError(
            f"{path}: '{key}' has shape {tuple(mask.shape)}; it marks the real positions of a batch of shape {shape}"
        )
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise SoraError(f"{path}: '{key}' must hold only 0/1 (or true/false)")
    return mask.bool()


def _data_config(path: Path, model: nn.Module, tokenizer, *, split: str, batch_size: int, seed: int) -> AnalysisData:
    config = read_data_config(path)
    text = config.task in (None, "classification", "lm", "seq2seq") and model.config.input == "text"
    if text and tokenizer is None:
        raise SoraError(
            f"{path}: text data needs the model's tokenizer, but the model folder has no tokenizer.json "
            "(the ids would not match what the model was trained on)"
        )
    data = prepare_data(config, tokenizer=tokenizer)
    require_fits(model.config, data, path)
    if split not in data.splits or len(data.splits[split]) == 0:
        sizes = {k: len(v) for k, v in data.splits.items()}
        problem = unusable_split(split, sizes, data.name or "the data", getattr(config.split, split, None))
        raise SoraError(f"{path}: {problem}")
    # shuffled (bucketed by length within windows): the first batches are a fair sample, not the shortest
    return AnalysisData(
        lambda: iter(data.loader(split, batch_size, shuffle=True, seed=seed)), data.task, data.labels, data.name
    )
