"""Attention drawn over the input itself: heat maps over an image, attention along a spectrogram's time axis.

A ViT classifies from its CLS token, so what a head contributes is read from the CLS query's row: its
attention to each patch, put back where the patch lies in the image. Where the model pools by mean (no
CLS), each patch's *received* attention (the mean over queries) is drawn instead. Attention rollout
(Abnar & Zuidema 2020) follows attention through the layers: the head-averaged pattern of each layer,
with the residual connection as 0.5 identity, multiplied up to that layer. Audio models use the same
readings along time, each token covering ``patch_frames`` spectrogram frames.

The data functions are numpy only; the drawing functions import matplotlib when they run (figures.py says why).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sora.analyze.figures import new_figure, save_png


def head_maps(pattern: np.ndarray, has_cls: bool, grid: int) -> np.ndarray:
    """(H, T, T) self-attention of an image model -> (H, grid, grid) attention over the patches."""
    return _per_patch(pattern, has_cls).reshape(pattern.shape[0], grid, grid)


def frame_attention(pattern: np.ndarray, has_cls: bool) -> np.ndarray:
    """(H, T, T) self-attention of an audio model -> (H, N) attention over its N time patches."""
    return _per_patch(pattern, has_cls)


def _per_patch(pattern: np.ndarray, has_cls: bool) -> np.ndarray:
    if has_cls:
        return pattern[:, 0, 1:]  # (H, N): what the CLS token reads
    return pattern.mean(axis=1)  # (H, N): received attention, averaged over queries


def attention_rollout(patterns: list[np.ndarray], has_cls: bool, grid: int) -> list[np.ndarray]:
    """Per layer, the rolled-out attention of the CLS token (or of the mean over tokens) to each patch, as
    (grid, grid); each map sums to at most 1 (the CLS token keeps the rest)."""
    rolled, out = None, []
    for pattern in patterns:  # (H, T, T)
        a = pattern.mean(axis=0)  # (T, T)
        a = 0.5 * a + 0.5 * np.eye(a.shape[0])
        a = a / a.sum(axis=-1, keepdims=True)
        rolled = a if rolled is None else a @ rolled
        reading = rolled[0, 1:] if has_cls else rolled.mean(axis=0)
        out.append(reading.reshape(grid, grid))
    return out


def upsample(grid_map: np.ndarray, patch: int) -> np.ndarray:
    """(g, g) per-patch values -> (g * patch, g * patch): each patch's value over its pixels."""
    return np.kron(grid_map, np.ones((patch, patch)))


def display_image(x: np.ndarray, preprocessing: dict | None = None) -> np.ndarray:
    """A model input (C, H, W) back to something to look at: (H, W) grey or (H, W, 3) colour, in [0, 1].

    The training normalisation (meta.json ``preprocessing``) is undone per channel where known, so colours are
    right; the range is then stretched to [0, 1] (grey images look the same either way)."""
    c = x.shape[0]
    if preprocessing and len(preprocessing.get("mean", [])) == c and len(preprocessing.get("std", [])) == c:
        mean = np.asarray(preprocessing["mean"], dtype=np.float32).reshape(c, 1, 1)
        std = np.asarray(preprocessing["std"], dtype=np.float32).reshape(c, 1, 1)
        x = x * std + mean
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if c == 3:
        return x.transpose(1, 2, 0)
    return x.mean(axis=0)


def image_figure(example: dict, layers: list[str], title: str, path: Path, types=None) -> str:
    """Rows: layers; columns: the image (first row), each head's CLS attention, then the rollout up to that layer.

    Attention is red over the image, as opaque as it is strong; each map is scaled to its own maximum (written in
    its corner), so a head that spreads its attention is as readable as one that looks at one patch."""
    image, maps, rollout, patch = example["image"], example["head_maps"], example["rollout"], example["patch"]
    n_rows, n_heads = len(maps), max(m.shape[0] for m in maps)
    n_cols = n_heads + 2
    cell = float(np.clip(15.0 / n_cols, 0.9, 1.5))
    fig = new_figure(n_cols * cell + 0.4, n_rows * (cell + 0.25) + 0.6)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    grey = image.ndim == 2
    for i in range(n_rows):
        ax = axes[i, 0]
        if i == 0:
            ax.imshow(image, cmap="gray" if grey else None, interpolation="nearest")
            ax.set_title(_wrap(example.get("truth"), example.get("prediction")), fontsize=6)
        ax.axis("off")
        for h in range(n_heads):
            ax = axes[i, 1 + h]
            if h >= maps[i].shape[0]:
                ax.axis("off")
                continue
            kind = (types or {}).get((i, h))
            _overlay(ax, image, maps[i][h], patch, f"{layers[i]} h{h}" + (f"\n{kind}" if kind else ""))
        _overlay(axes[i, -1], image, rollout[i], patch, f"rollout to {layers[i]}")
    fig.suptitle(title + "  (red: CLS attention over the image, each map scaled to its max)", fontsize=9)
    return save_png(fig, path)


def _overlay(ax, image: np.ndarray, grid_map: np.ndarray, patch: int, title: str) -> None:
    heat = upsample(grid_map, patch)
    top = float(heat.max())
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    red = np.zeros((*heat.shape, 4))  # (H, W, RGBA): red, as opaque as the attention is strong
    red[..., 0], red[..., 1], red[..., 3] = 1.0, 0.1, 0.85 * (heat / top if top > 0 else heat)
    ax.imshow(red, interpolation="nearest")
    ax.text(0.02, 0.02, f"max {top:.2f}", transform=ax.transAxes, fontsize=5, color="white", va="bottom")
    ax.set_title(title, fontsize=6)
    ax.axis("off")


def audio_figure(example: dict, layers: list[str], title: str, path: Path) -> str:
    """The log-mel spectrogram on top; below it, one panel per layer of each head's attention along time
    (rows: heads, scaled to each head's max), on the same time axis."""
    spec, frames, pf = example["spectrogram"], example["frame_attention"], example["patch_frames"]
    n_mels, n_frames = spec.shape
    n_heads = max(f.shape[0] for f in frames)
    heights = [2.2] + [0.35 + 0.16 * n_heads] * len(frames)
    fig = new_figure(min(max(6.0, n_frames * 0.06 + 2.0), 14.0), sum(heights) + 0.9)
    axes = fig.subplots(len(heights), 1, sharex=True, height_ratios=heights, squeeze=False)[:, 0]
    axes[0].imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, n_frames, 0, n_mels))
    axes[0].set_ylabel("mel band", fontsize=7)
    axes[0].set_title(_wrap(example.get("truth"), example.get("prediction"), width=120), fontsize=8)
    for ax, layer, att in zip(axes[1:], layers, frames):
        per_frame = np.repeat(att, pf, axis=-1)  # (H, N * pf): each token's value over its frames
        top = per_frame.max(axis=-1, keepdims=True)
        scaled = np.divide(per_frame, top, out=np.zeros_like(per_frame), where=top > 0)
        ax.imshow(scaled, aspect="auto", cmap="Blues", vmin=0, vmax=1, extent=(0, per_frame.shape[1], att.shape[0], 0))
        ax.set_yticks(np.arange(att.shape[0]) + 0.5, [f"h{h}" for h in range(att.shape[0])], fontsize=6)
        ax.set_ylabel(layer, fontsize=7, rotation=0, ha="right", va="center")
    for ax in axes:
        ax.tick_params(labelsize=6)
    axes[-1].set_xlabel("frame", fontsize=7)
    fig.suptitle(f"{title}\nbelow: the attention each time patch gets, per head", fontsize=8)
    return save_png(fig, path)


def _wrap(truth: str | None, prediction: str | None, width: int = 28) -> str:
    lines = [f"true: {truth}" if truth is not None else "", f"predicted: {prediction}" if prediction else ""]
    return "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in lines if line)
