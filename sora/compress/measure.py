"""What a compressed model costs: weights, bytes on disk, and latency relative to fp32.

Latency is measured in-process on real batches: a warm-up, then the best of N repeats (the least
disturbed run on a shared machine). Absolute times depend on the machine and its load, so reports
give ratios to the fp32 model measured the same way, in the same process, back to back.
"""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from sora.models.folder import WEIGHTS
from sora.particles.int8 import Int8Embedding, Int8Linear


def count_weights(model: nn.Module) -> int:
    """Trainable-style parameters, counting int8 matrices (buffers) as the weights they replace."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    for m in model.modules():
        if isinstance(m, (Int8Linear, Int8Embedding)) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            total += m.weight.numel()
            bias = getattr(m, "bias", None)
            total += bias.numel() if isinstance(bias, torch.Tensor) else 0
    return total


def weights_bytes(model_dir: str | Path) -> int:
    """Size of ``model.safetensors`` (the tokenizer and metadata are the same for every variant)."""
    return (Path(model_dir) / WEIGHTS).stat().st_size


def timing_batches(data, split: str, batch_size: int) -> list[dict]:
    """Random examples to time, the same ones on every call: eight alone at batch 1, else four
    batches. No length bucketing, so a vocabulary-pruned variant's re-tokenized data gives the
    same texts (bucketing by its own lengths would regroup them)."""
    n = 8 if batch_size == 1 else 4
    return list(islice(data.loader(split, batch_size, shuffle=True, bucket=False), n))


@torch.inference_mode()
def latency(run: Callable[[dict], object], batches: list[dict], *, repeats: int = 10, warmup: int = 2) -> float:
    """Best-of-``repeats`` seconds to run every batch in ``batches`` once."""
    for _ in range(warmup):
        for batch in batches:
            run(batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        best = min(best, time.perf_counter() - start)
    return best


def compare_latency(
    models: dict[str, Callable[[dict], object]],
    batches: list[dict] | dict[str, list[dict]],
    *,
    repeats: int = 10,
    rounds: int = 3,
) -> dict[str, float]:
    """Seconds per variant, interleaved over ``rounds`` so that load changes hit every variant alike.

    ``batches``: the same for every variant, or per variant (the same texts tokenized by each
    variant's own tokenizer, after vocabulary pruning)."""
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, run in models.items():
            own = batches[name] if isinstance(batches, dict) else batches
            best[name] = min(best[name], latency(run, own, repeats=max(1, repeats // rounds), warmup=1))
    return best
