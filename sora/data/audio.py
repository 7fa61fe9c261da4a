"""Audio: WAV decoding, resampling, log-mel spectrograms, and noise / time-shift augmentation.

torchaudio cannot be installed here, so the mel filterbank is built by hand (the HTK mel scale,
triangular filters, as in librosa and torchaudio); the STFT is ``torch.stft`` and resampling is
``scipy.signal.resample_poly``. Features are computed per batch, after augmentation, so that every
epoch sees fresh noise.
"""

from __future__ import annotations

import io
import math
import wave
from functools import lru_cache

import numpy as np
import torch
from scipy.io import wavfile
from scipy.signal import resample_poly

from sora.errors import SoraError


def decode_wav(data: bytes, sample_rate: int, name: str = "wav") -> np.ndarray:
    """A mono float32 waveform in [-1, 1] at ``sample_rate``."""
    try:
        rate, samples = wavfile.read(io.BytesIO(data))
    except (ValueError, EOFError) as e:
        try:  # some writers leave a bogus frame count in the header; the wave module tolerates it
            with wave.open(io.BytesIO(data)) as w:
                rate, width = w.getframerate(), w.getsampwidth()
                raw = w.readframes(w.getnframes())
                channels = w.getnchannels()
            if width != 2:
                raise SoraError(f"{name}: not a readable WAV file ({e})") from None
            samples = np.frombuffer(raw, "<i2").reshape(-1, channels)
        except (wave.Error, EOFError):
            raise SoraError(f"{name}: not a readable WAV file ({e})") from None
    samples = np.asarray(samples)
    if samples.dtype.kind in "iu":
        info = np.iinfo(samples.dtype)
        samples = (samples.astype(np.float32) - (info.max + info.min + 1) / 2) / (2 ** (8 * samples.dtype.itemsize - 1))
    samples = samples.astype(np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return resample(samples, rate, sample_rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples.astype(np.float32)
    g = math.gcd(rate, target)
    return resample_poly(samples, target // g, rate // g).astype(np.float32)


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the mel scale."""
    f_max = f_max or sample_rate / 2
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling))).float()


def log_mel(
    waves: torch.Tensor, sample_rate: int, n_mels: int = 40, n_fft: int = 400, hop_length: int = 160
) -> torch.Tensor:
    """(B, S) waveforms -> (B, n_mels, F) log-mel energies, F = S // hop_length + 1."""
    window = torch.hann_window(n_fft, device=waves.device)
    spec = torch.stft(waves, n_fft, hop_length, window=window, center=True, return_complex=True)  # (B, n_fft/2+1, F)
    power = spec.real.square() + spec.imag.square()
    mels = mel_filterbank(sample_rate, n_fft, n_mels).to(waves.device) @ power  # (B, n_mels, F)
    return torch.log(mels + 1e-6)


def n_frames(n_samples: int, hop_length: int) -> int:
    return n_samples // hop_length + 1


def add_noise(wave_: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at ``snr_db`` relative to the clip's own power."""
    power = float(np.mean(wave_**2)) + 1e-12
    noise = rng.standard_normal(len(wave_)).astype(np.float32) * math.sqrt(power / 10 ** (snr_db / 10))
    return wave_ + noise


def time_shift(wave_: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Shift by up to ``max_samples`` either way, filling with silence (not wrapping speech around)."""
    if max_samples <= 0:
        return wave_
    k = int(rng.integers(-max_samples, max_samples + 1))
    out = np.zeros_like(wave_)
    if k >= 0:
        out[k:] = wave_[: len(wave_) - k]
    else:
        out[:k] = wave_[-k:]
    return out


def change_speed(wave_: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together, like a tape): a talker with a shorter or longer
    vocal tract, speaking faster or slower. Linear interpolation, which is enough below 8 kHz."""
    n = max(2, int(round(len(wave_) / factor)))
    return np.interp(np.linspace(0, len(wave_) - 1, n), np.arange(len(wave_)), wave_).astype(np.float32)


def mask_bands(mels: torch.Tensor, frames: torch.Tensor, widths: tuple[int, int], count: int, rng) -> torch.Tensor:
    """SpecAugment (Park et al. 2019): ``count`` random runs of up to ``widths[0]`` mel bands and as many of up to
    ``widths[1]`` frames set to 0 (the normalised mean), so no single band or moment decides the answer.
    ``mels`` (B, n_mels, F) normalised; ``frames`` (B,) real frames of each clip."""
    out = mels.clone()
    M = mels.shape[1]
    for b in range(mels.shape[0]):
        for _ in range(count):
            w = int(rng.integers(0, widths[0] + 1))
            f0 = int(rng.integers(0, max(1, M - w + 1)))
            out[b, f0 : f0 + w, :] = 0.0
            t = int(rng.integers(0, min(widths[1], int(frames[b]) // 5) + 1))  # at most a fifth of the clip
            t0 = int(rng.integers(0, max(1, int(frames[b]) - t + 1)))
            out[b, :, t0 : t0 + t] = 0.0
    return out
