"""Inference-time preprocessing that matches training: what a model folder needs besides its tokenizer.

``Prepared.preprocessing()`` returns a JSON-able dict (keep it in the model folder's ``meta.json``); the
functions here apply it to new images or audio, exactly as the training loader did (no augmentation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sora.data import audio as au
from sora.data.datasets import Audio, Images
from sora.errors import SoraError


def describe_preprocessing(examples) -> dict[str, Any] | None:
    if isinstance(examples, Images):
        return {
            "kind": "image",
            "size": int(examples.images.shape[1]),
            "channels": int(examples.images.shape[3]),
            "mean": examples.mean.flatten().tolist(),
            "std": examples.std.flatten().tolist(),
        }
    if isinstance(examples, Audio):
        return {
            "kind": "audio",
            "sample_rate": examples.sample_rate,
            "n_mels": examples.n_mels,
            "n_fft": examples.n_fft,
            "hop_length": examples.hop_length,
            "mean": float(examples.stats[0]),
            "std": float(examples.stats[1]),
        }
    return None


def images_to_inputs(images: np.ndarray, prep: dict[str, Any]) -> torch.Tensor:
    """(N, H, W[, C]) pixel arrays -> (N, C, H, W) normalised inputs."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:3] != (prep["size"], prep["size"]) or x.shape[3] != prep["channels"]:
        raise SoraError(
            f"images are {x.shape[1:]} but the model takes {prep['size']}x{prep['size']}x{prep['channels']}"
        )
    t = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)
    mean = torch.tensor(prep["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(prep["std"]).view(1, -1, 1, 1)
    return ((t - mean) / std).contiguous()


def waves_to_inputs(waves: list[np.ndarray], rate: int, prep: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mono waveforms at ``rate`` -> ((B, n_mels, F) standardised log-mels, (B, F) valid frames)."""
    waves = [au.resample(np.asarray(w, dtype=np.float32), rate, prep["sample_rate"]) for w in waves]
    examples = Audio(
        waves,
        prep["sample_rate"],
        prep["n_mels"],
        prep["n_fft"],
        prep["hop_length"],
        labels=np.zeros(len(waves)),
        stats=(prep["mean"], prep["std"]),
    )
    batch = examples.batch(np.arange(len(waves)))
    return batch["inputs"], batch["valid"]
