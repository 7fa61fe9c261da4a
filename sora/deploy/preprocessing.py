"""How a model folder says raw images or audio become its inputs, checked once when a predictor loads.

Training records it in ``meta.json`` as ``"preprocessing"`` (sora.data.preprocess); a ViT imported from
Hugging Face carries its ``preprocessor_config.json`` as ``"image_preprocessing"`` instead, which is turned
into the same form here. A folder that lacks what its input needs is one error at load, not one per item.
A question-answering model's "preprocessing" is its windows: ``max_len`` and ``stride`` (sora.tasks.answering).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sora.errors import SoraError
from sora.models import ModelConfig
from sora.tasks.answering import window_settings

IMAGE_KEYS = ("size", "channels", "mean", "std")
AUDIO_KEYS = ("sample_rate", "n_mels", "n_fft", "hop_length", "mean", "std")


def input_preprocessing(folder: Path, config: ModelConfig, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The ``sora.data.preprocess`` settings for an image or audio model; the windows of a question-answering
    model; None for other text models."""
    if config.arch == "span_extractor":
        max_len, stride = window_settings(meta, config.max_len)
        return {"kind": "windows", "max_len": max_len, "stride": stride}
    if config.input == "text":
        return None
    prep = meta.get("preprocessing")
    if prep is None and config.input == "image" and meta.get("image_preprocessing") is not None:
        prep = from_hugging_face(meta["image_preprocessing"], config, folder)
    if prep is None:
        raise SoraError(
            f'{folder}/meta.json: no "preprocessing" (how training turned raw {config.input} into inputs), so '
            f"new {config.input} cannot be prepared the same way; retrain with this version of Sora, which records it"
        )
    keys = IMAGE_KEYS if config.input == "image" else AUDIO_KEYS
    missing = [k for k in keys if k not in prep]
    if prep.get("kind", config.input) != config.input or missing:
        raise SoraError(
            f"{folder}/meta.json: preprocessing is not {config.input} settings"
            + (f" (missing {', '.join(missing)})" if missing else f" (kind {prep.get('kind')!r})")
        )
    return prep


def from_hugging_face(hf: dict[str, Any], config: ModelConfig, folder: Path) -> dict[str, Any]:
    """A Hugging Face image processor's settings as Sora's: pixels 0-255, (x * rescale - mean) / std is
    (x - mean / rescale) / (std / rescale), so only the mean and std change."""
    size = hf.get("size", config.image.size)
    if isinstance(size, dict):
        size = size.get("height", size.get("shortest_edge", config.image.size))
    if size != config.image.size:
        raise SoraError(f"{folder}/meta.json: image_preprocessing size {size} is not the model's {config.image.size}")
    scale = float(hf.get("rescale_factor", 1 / 255)) if hf.get("do_rescale", True) else 1.0
    channels = config.image.channels
    mean = _per_channel(hf.get("image_mean", 0.0), channels) if hf.get("do_normalize", True) else [0.0] * channels
    std = _per_channel(hf.get("image_std", 1.0), channels) if hf.get("do_normalize", True) else [1.0] * channels
    return {
        "kind": "image",
        "size": int(size),
        "channels": channels,
        "mean": [m / scale for m in mean],
        "std": [s / scale for s in std],
    }


def _per_channel(value, channels: int) -> list[float]:
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    return values * channels if len(values) == 1 else values
