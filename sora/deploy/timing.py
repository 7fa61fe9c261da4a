"""Choosing the faster backend by measuring both on the model's own kind of work, at load.

Each backend runs the same synthetic batch (a warm-up, then a few timed repetitions); the median wins. The batch
is the size ``predict`` runs by default (32 inputs of 32 tokens, about a sorted batch of short texts): a smaller
probe favoured onnxruntime, whose per-call overhead is lower, on a model where torch was faster at batch 32
(all-MiniLM-L6-v2, 2 cores).
Neither is assumed faster: onnxruntime usually is on a CPU (docs: DATA.md), but not for every model size,
thread count or int8 graph.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import Tensor

from sora.deploy.samples import pair_segments
from sora.models import ModelConfig

REPEATS = 5
PROBE_BATCH, PROBE_TOKENS, PROBE_NEW_TOKENS = 32, 32, 4


def median_ms(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """The median wall time of ``run`` in milliseconds, after one untimed warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def probe_feeds(
    config: ModelConfig, prep: dict | None, batch: int = PROBE_BATCH, tokens: int = PROBE_TOKENS
) -> dict[str, Tensor]:
    """A batch of inputs of the model's kind (their values do not matter for timing)."""
    B = batch
    if config.input == "text":
        T = min(tokens, config.max_len)
        ids = torch.arange(B * T).view(B, T) % max(1, config.vocab_size - 1) + 1  # (B, T) no padding id 0
        feeds = {"input_ids": ids, "valid": torch.ones(B, T, dtype=torch.bool)}
        if config.segments:  # text pairs: the first half one text, the rest the other
            feeds["segments"] = pair_segments(feeds["valid"])  # (B, T)
        return feeds
    if config.input == "image":
        return {"pixels": torch.zeros(B, config.image.channels, config.image.size, config.image.size)}
    frames = config.audio.patch_frames * min(tokens, config.max_len - 1)
    return {"mels": torch.zeros(B, config.audio.n_mels, frames), "valid": torch.ones(B, frames, dtype=torch.bool)}


def choose(candidates: dict[str, Callable[[], object]]) -> tuple[str, dict[str, float]]:
    """The name of the fastest candidate and every candidate's median time (ms)."""
    timings = {name: round(median_ms(run), 3) for name, run in candidates.items()}
    return min(timings, key=timings.get), timings
