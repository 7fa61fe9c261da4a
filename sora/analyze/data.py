"""Where ``sora analyze`` gets its batches: a recipe or data config (sora.data), or a tensors file.

- a recipe (``model:`` + ``data:``) or a data config YAML/JSON: prepared with ``sora.data`` using
  the *model's* tokenizer, so token ids mean what they meant in training; the recipe's
  ``analyze:`` section, if any, becomes the analysis settings;
- a ``.safetensors`` file of batch tensors (the batch contract's keys, examples along the first
  dimension, e.g. ``inputs``, ``valid``, ``labels``): useful for images, audio, or data made
  elsewhere; it is cut into batches in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from torch import Tensor, nn

from sora.errors import SoraError


@dataclass
class AnalysisData:
    batches: Callable[[], Iterable[dict[str, Tensor]]]
    task: str | None
    labels: list[str] | None
    name: str


def recipe_analyze_section(path: str | Path) -> dict[str, Any] | None:
    """The ``analyze:`` section of a recipe file (None for data configs and tensor files)."""
    from sora.configio import read_mapping

    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file():
        return None
    raw, lines = read_mapping(path)
    section = raw.get("analyze") if isinstance(raw.get("data"), dict) else None
    if section is not None and not isinstance(section, dict):
        raise SoraError(f"{path}:{lines.get(('analyze',), '?')}: analyze: expected a mapping")
    return section


def load_analysis_data(path: str | Path, model: nn.Module, tokenizer, *, split: str, batch_size: int,
                       seed: int = 0) -> AnalysisData:
    path = Path(path)
    if not path.is_file():
        raise SoraError(f"{path}: no such data file (give a recipe, a data config, or a .safetensors batch file)")
    if path.suffix == ".safetensors":
        return _tensor_file(path, batch_size)
    return _data_config(path, model, tokenizer, split=split, batch_size=batch_size, seed=seed)


def _tensor_file(path: Path, batch_size: int) -> AnalysisData:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise SoraError(f"{path}: not a readable safetensors file ({e})") from None
    if not tensors:
        raise SoraError(f"{path}: holds no tensors")
    sizes = {k: v.shape[0] if v.dim() else None for k, v in tensors.items()}
    n = next(iter(sizes.values()))
    if any(s != n for s in sizes.values()):
        raise SoraError(f"{path}: every tensor needs the same number of examples along dim 0 (got {sizes})")

    def batches():
        for start in range(0, n, batch_size):
            yield {k: v[start : start + batch_size] for k, v in tensors.items()}

    return AnalysisData(batches, None, None, path.name)


def _data_config(path: Path, model: nn.Module, tokenizer, *, split: str, batch_size: int, seed: int) -> AnalysisData:
    try:
        from sora.data import prepare_data, read_data_config
    except ImportError as e:  # pragma: no cover - the data layer ships with Sora
        raise SoraError(f"reading {path} needs sora.data ({e}); pass a .safetensors batch file instead") from None
    config = read_data_config(path)
    text = config.task in (None, "classification", "lm", "seq2seq") and model.config.input == "text"
    if text and tokenizer is None:
        raise SoraError(f"{path}: text data needs the model's tokenizer, but the model folder has no tokenizer.json "
                        "(the ids would not match what the model was trained on)")
    data = prepare_data(config, tokenizer=tokenizer)
    _check_fit(path, data, model)
    if split not in data.splits:
        raise SoraError(f"{path}: no split {split!r} (has {', '.join(data.splits)})")
    if len(data.splits[split]) == 0:
        raise SoraError(f"{path}: split {split!r} is empty")
    # shuffled (bucketed by length within windows): the first batches are a fair sample, not the shortest
    return AnalysisData(lambda: iter(data.loader(split, batch_size, shuffle=True, seed=seed)), data.task,
                        data.labels, data.name)


def _check_fit(path: Path, data, model: nn.Module) -> None:
    config = model.config
    if data.modality != config.input:
        raise SoraError(f"{path}: the data is {data.modality} but the model takes {config.input} input")
    wants = {"encoder_classifier": ("classification",), "decoder_lm": ("lm",), "seq2seq": ("seq2seq",),
             "token_classifier": ("ctc",), "encoder": ("classification", "lm", "seq2seq", "ctc")}[config.arch]
    if data.task not in wants:
        raise SoraError(f"{path}: a {data.task} dataset does not fit a {config.arch} model (needs {', '.join(wants)})")
    if data.labels is not None and config.n_classes is not None and data.task == "classification" \
            and len(data.labels) != config.n_classes:
        raise SoraError(f"{path}: the data has {len(data.labels)} labels but the model predicts {config.n_classes} classes")
