"""Audio features: the mel filterbank, log-mel shapes, resampling, and noise at a chosen SNR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sora.data.audio import (
    add_noise,
    change_speed,
    decode_wav,
    log_mel,
    mask_bands,
    mel_filterbank,
    resample,
    time_shift,
)
from sora.errors import SoraError
from tests.data.test_formats import _wav_bytes


def test_mel_filterbank_is_triangles_that_cover_the_band():
    fb = mel_filterbank(16000, 400, 40)
    assert fb.shape == (40, 201) and (fb >= 0).all() and fb.max() <= 1.0 + 1e-6
    peaks = fb.argmax(dim=1)
    assert (peaks[1:] >= peaks[:-1]).all()  # centres rise with the band index
    assert (peaks[1:] - peaks[:-1])[-5:].float().mean() > (peaks[1:] - peaks[:-1])[:5].float().mean()  # mel spacing


def test_log_mel_puts_a_tone_in_the_right_band():
    t = torch.arange(16000) / 16000
    waves = torch.stack([torch.sin(2 * torch.pi * 500 * t), torch.sin(2 * torch.pi * 4000 * t)])
    mels = log_mel(waves, 16000, n_mels=40, n_fft=400, hop_length=160)
    assert mels.shape == (2, 40, 101)
    low_band, high_band = mels[0].mean(1).argmax(), mels[1].mean(1).argmax()
    assert low_band < 15 < high_band


def test_resample_keeps_duration_and_frequency():
    t = np.arange(22050) / 22050
    out = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), 22050, 16000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s at 16 kHz: bin k is k Hz


def test_noise_hits_the_requested_snr_and_shift_keeps_length():
    rng = np.random.default_rng(0)
    clean = np.sin(np.linspace(0, 200, 16000)).astype(np.float32)
    noisy = add_noise(clean, 10.0, rng)
    snr = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)
    shifted = time_shift(clean, 800, rng)
    assert len(shifted) == len(clean) and not np.array_equal(shifted, clean)


def test_speed_changes_tempo_and_pitch_together():
    t = np.arange(16000) / 16000
    faster = change_speed(np.sin(2 * np.pi * 440 * t).astype(np.float32), 1.1)
    assert len(faster) == round(16000 / 1.1)
    spectrum = np.abs(np.fft.rfft(faster, n=16000))
    assert abs(np.argmax(spectrum) - 484) <= 2  # 440 Hz played 1.1x faster


def test_spec_masks_blank_bands_and_frames_inside_each_clip_only():
    rng = np.random.default_rng(0)
    mels = torch.ones(3, 40, 100)
    frames = torch.tensor([100, 50, 10])
    out = mask_bands(mels, frames, (8, 10), 2, rng)
    assert torch.equal(mels, torch.ones(3, 40, 100))  # the batch itself is untouched
    blank_bands = (out == 0).all(dim=2).sum(dim=1)  # (3,) bands masked over every frame
    assert (blank_bands <= 16).all() and blank_bands.sum() > 0
    blank_frames = (out == 0).all(dim=1)  # (3, F)
    assert not blank_frames[1, 50:].any() and blank_frames[2].sum() <= 2 * 2  # masks stay in the real frames
    assert blank_frames.sum(dim=1).max() <= 20


def test_decode_wav_reads_int16_and_rejects_garbage():
    samples = np.linspace(-0.5, 0.5, 800)
    out = decode_wav(_wav_bytes(samples, 8000), 8000)
    assert out.dtype == np.float32 and np.allclose(out, samples, atol=1e-4)
    with pytest.raises(SoraError, match="clip.wav: not a readable WAV"):
        decode_wav(b"RIFFnonsense", 16000, "clip.wav")
