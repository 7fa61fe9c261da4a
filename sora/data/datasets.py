"""Prepared examples of each kind, and how a list of them becomes one padded batch (the contract).

Each dataset holds its examples ready for the model (token ids, images, waveforms) and builds a
whole batch at once from indices: padding is dynamic (to the longest example in the batch), and
augmentation, when a dataset has it, draws from the generator the loader passes in, so a batch is
the same for a given (seed, epoch, batch number) whichever worker builds it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from sora.data import audio as au
from sora.data.config import AugmentConfig

IGNORE = -100  # positions the loss skips
SPEC_MASKS = 2  # SpecAugment masks of each kind per clip (Park et al. 2019 use 1-2 on short clips)


def pad_ids(seqs: list[np.ndarray], pad: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad id sequences to the longest: (B, T) ids and (B, T) True at real tokens."""
    T = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), max(T, 1)), pad, dtype=torch.long)
    valid = torch.zeros(ids.shape, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.int64))
        valid[i, : len(s)] = True
    return ids, valid


class Examples:
    """Base: ``lengths`` (for bucketing), ``batch(indices, rng)``, ``example(i)`` (for show) and ``columns``:
    the source's other columns (an accent, a noise level), one value per example, to group metrics by."""

    lengths: np.ndarray
    columns: Mapping[str, list] = MappingProxyType({})

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, indices: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def example(self, i: int) -> dict[str, Any]:
        raise NotImplementedError


class Rows(Examples):
    """The examples at ``rows`` of another set: one group's share of a split, batched as the split is."""

    def __init__(self, examples: Examples, rows: np.ndarray):
        self.examples, self.rows = examples, np.asarray(rows, dtype=np.int64)
        self.lengths = examples.lengths[self.rows]
        self.columns = {k: [v[i] for i in self.rows] for k, v in examples.columns.items()}

    def batch(self, indices, rng=None):
        return self.examples.batch(self.rows[np.asarray(indices, dtype=np.int64)], rng)

    def example(self, i):
        return self.examples.example(int(self.rows[i]))


class TextClassification(Examples):
    """One text, or a pair of texts with ``segments`` (segment ids, sora.data.pairs), per label."""

    def __init__(
        self,
        ids: list[np.ndarray],
        labels: np.ndarray,
        texts: list[str] | None = None,
        segments: list[np.ndarray] | None = None,
    ):
        self.ids, self.labels, self.texts = ids, np.asarray(labels, dtype=np.int64), texts
        self.segments = segments
        self.lengths = np.array([len(s) for s in ids], dtype=np.int64)

    def batch(self, indices, rng=None):
        inputs, valid = pad_ids([self.ids[i] for i in indices])
        out = {"inputs": inputs, "valid": valid, "labels": torch.from_numpy(self.labels[indices])}
        if self.segments is not None:
            out["segments"], _ = pad_ids([self.segments[i] for i in indices])
        return out

    def example(self, i):
        return {"text": self.texts[i] if self.texts else None, "label": int(self.labels[i]), "tokens": len(self.ids[i])}


class LMBlocks(Examples):
    """Contiguous, non-overlapping blocks of one token stream; labels are the next tokens."""

    def __init__(self, stream: np.ndarray, block_size: int):
        self.stream, self.block_size = np.asarray(stream, dtype=np.int64), block_size
        n = max(0, (len(self.stream) - 1) // block_size)
        self.lengths = np.full(n, block_size, dtype=np.int64)

    def batch(self, indices, rng=None):
        starts = np.asarray(indices, dtype=np.int64) * self.block_size
        windows = np.stack([self.stream[s : s + self.block_size + 1] for s in starts])  # (B, T+1)
        t = torch.from_numpy(windows)
        return {"inputs": t[:, :-1].contiguous(), "labels": t[:, 1:].contiguous()}

    def example(self, i):
        return {"block": i, "tokens": self.block_size}


class Seq2SeqPairs(Examples):
    """Source ids end with [EOS]; targets too: tgt_in = [BOS] + target[:-1], tgt_out = target."""

    def __init__(
        self, src: list[np.ndarray], tgt: list[np.ndarray], bos_id: int, texts: list[tuple[str, str]] | None = None
    ):
        self.src, self.tgt, self.bos_id, self.texts = src, tgt, bos_id, texts
        self.lengths = np.array([max(len(s), len(t)) for s, t in zip(src, tgt)], dtype=np.int64)

    def batch(self, indices, rng=None):
        src, src_valid = pad_ids([self.src[i] for i in indices])
        tgt_in, tgt_valid = pad_ids([np.concatenate([[self.bos_id], self.tgt[i][:-1]]) for i in indices])
        tgt_out, _ = pad_ids([self.tgt[i] for i in indices])
        tgt_out = tgt_out.masked_fill(~tgt_valid, IGNORE)
        return {"src": src, "src_valid": src_valid, "tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_valid": tgt_valid}

    def example(self, i):
        s, t = self.texts[i] if self.texts else (None, None)
        return {"source": s, "target": t, "source_tokens": len(self.src[i]), "target_tokens": len(self.tgt[i])}


class Images(Examples):
    """(N, H, W, C) images, normalised per channel with the training split's mean and std."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        augment: AugmentConfig | None = None,
    ):
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment = augment
        self.lengths = np.full(len(images), images.shape[1] * images.shape[2], dtype=np.int64)

    def batch(self, indices, rng=None):
        x = torch.from_numpy(np.ascontiguousarray(self.images[indices])).float().permute(0, 3, 1, 2)  # (B, C, H, W)
        x = (x - self.mean) / self.std
        if self.augment is not None and rng is not None:
            x = self._augment(x, rng)
        return {"inputs": x.contiguous(), "labels": torch.from_numpy(self.labels[indices])}

    def _augment(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        if self.augment.flip:
            flip = torch.from_numpy(rng.random(len(x)) < 0.5)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        s = self.augment.shift
        if s:
            padded = torch.nn.functional.pad(x, (s, s, s, s))  # zeros = the mean after normalising
            H, W = x.shape[-2:]
            offsets = rng.integers(0, 2 * s + 1, size=(len(x), 2))
            x = torch.stack([padded[i, :, dy : dy + H, dx : dx + W] for i, (dy, dx) in enumerate(offsets)])
        return x

    def example(self, i):
        return {"label": int(self.labels[i]), "shape": list(self.images.shape[1:])}


class Audio(Examples):
    """Waveforms at one sample rate -> log-mel (B, n_mels, F) per batch, after any augmentation.

    With ``targets`` (CTC) a batch carries padded target ids instead of one label per clip.
    Features are standardised with the training split's mean and std of log-mel energies.
    """

    def __init__(
        self,
        waves: list[np.ndarray],
        sample_rate: int,
        n_mels: int,
        n_fft: int,
        hop_length: int,
        labels: np.ndarray | None = None,
        targets: list[np.ndarray] | None = None,
        augment: AugmentConfig | None = None,
        stats: tuple[float, float] = (0.0, 1.0),
        texts: list[str] | None = None,
    ):
        self.waves, self.sample_rate = waves, sample_rate
        self.n_mels, self.n_fft, self.hop_length = n_mels, n_fft, hop_length
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.targets, self.augment, self.stats, self.texts = targets, augment, stats, texts
        self.lengths = np.array([au.n_frames(len(w), hop_length) for w in waves], dtype=np.int64)
        self.longest = max((len(w) for w in waves), default=1)

    def batch(self, indices, rng=None):
        waves = [self.waves[i] for i in indices]
        if self.augment is not None and rng is not None:
            waves = [self._augment(w, rng) for w in waves]
        S = max(len(w) for w in waves)
        padded = torch.zeros(len(waves), S)
        for i, w in enumerate(waves):
            padded[i, : len(w)] = torch.from_numpy(w)
        mels = au.log_mel(padded, self.sample_rate, self.n_mels, self.n_fft, self.hop_length)  # (B, n_mels, F)
        frames = torch.as_tensor([au.n_frames(len(w), self.hop_length) for w in waves])
        valid = torch.arange(mels.shape[-1])[None, :] < frames[:, None]  # (B, F)
        mean, std = self.stats
        mels = ((mels - mean) / std).masked_fill(~valid[:, None, :], 0.0)
        if self.augment is not None and rng is not None and self.augment.spec_mask is not None:
            mels = au.mask_bands(mels, frames, self.augment.spec_mask, SPEC_MASKS, rng)
        out = {"inputs": mels, "valid": valid}
        if self.targets is not None:
            seqs = [self.targets[i] for i in indices]
            out["targets"], _ = pad_ids(seqs, pad=0)
            out["target_lengths"] = torch.as_tensor([len(s) for s in seqs], dtype=torch.long)
        else:
            out["labels"] = torch.from_numpy(self.labels[indices])
        return out

    def _augment(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.augment.speed is not None:  # never longer than the split's longest clip: the model's max_len holds
            factor = max(float(rng.uniform(*self.augment.speed)), len(w) / self.longest)
            w = au.change_speed(w, factor)
        if self.augment.time_shift:
            w = au.time_shift(w, int(self.augment.time_shift * self.sample_rate), rng)
        if self.augment.noise_snr is not None:
            low, high = self.augment.noise_snr
            w = au.add_noise(w, float(rng.uniform(low, high)), rng)
        return w

    def example(self, i):
        out = {"seconds": round(len(self.waves[i]) / self.sample_rate, 2), "frames": int(self.lengths[i])}
        if self.texts:
            out["text"] = self.texts[i]
        if self.labels is not None:
            out["label"] = int(self.labels[i])
        return out
