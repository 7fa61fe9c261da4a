"""Batches: planned from (seed, epoch), bucketed by length, sharded across ranks, built in workers.

The plan (which example indices form each batch) is computed from the seed and epoch alone, so it
is identical on every rank and on every resume. Bucketing shuffles, then sorts windows of
``BUCKET_BATCHES`` batches by length and cuts them into batches, then shuffles the batches: similar
lengths travel together (little padding) while the order stays random. Each rank takes every
``world_size``-th batch; the plan first splits its largest batches until the count is a multiple of
``world_size``, so every rank gets the same number of batches and every example is used exactly once.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sora.data.datasets import Examples
from sora.errors import SoraError

BUCKET_BATCHES = 50  # batches per sorting window: larger means less padding, less randomness


def _rng(*keys: int) -> np.random.Generator:
    digest = hashlib.sha256(",".join(str(int(k)) for k in keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def count_batches(n: int, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
    """Batches per rank for ``n`` examples: what ``plan_batches`` gives, computed without planning."""
    if batch_size < 1 or world_size < 1:
        raise SoraError(f"batch_size and world_size must be >= 1 (got {batch_size}, {world_size})")
    if drop_last:
        return (n // batch_size) // world_size
    total = -(-n // batch_size)
    return -(-total // world_size)


def plan_batches(
    lengths: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    bucket: bool,
    drop_last: bool = False,
    world_size: int = 1,
) -> list[np.ndarray]:
    """Every batch of one epoch, for all ranks; rank r takes batches r, r + world_size, ..."""
    n = len(lengths)
    rng = _rng(seed, epoch)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if bucket and n:
        if shuffle:
            window = batch_size * BUCKET_BATCHES
            order = np.concatenate(
                [w[np.argsort(lengths[w], kind="stable")] for w in np.split(order, range(window, n, window))]
            )
        else:  # evaluation: one global sort gives the least padding; order does not matter
            order = order[np.argsort(lengths[order], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
        batches = batches[: len(batches) - len(batches) % world_size]
    if bucket and shuffle and batches:
        keep_last = not drop_last and len(batches[-1]) < batch_size
        head = batches[:-1] if keep_last else batches
        batches = [head[i] for i in rng.permutation(len(head))] + (batches[-1:] if keep_last else [])
    return _equalise(batches, world_size)


def _equalise(batches: list[np.ndarray], world_size: int) -> list[np.ndarray]:
    """Split the largest batches until the count divides by ``world_size`` (no example repeated)."""
    if world_size == 1 or len(batches) % world_size == 0:
        return batches
    target = -(-len(batches) // world_size) * world_size
    batches = list(batches)
    while len(batches) < target:
        i = max(range(len(batches)), key=lambda j: len(batches[j]))
        if len(batches[i]) < 2:
            warnings.warn(
                f"{sum(map(len, batches))} examples cannot fill {target} batches: repeating a few "
                f"so that all {world_size} ranks run the same number of steps",
                stacklevel=3,
            )
            while len(batches) < target:
                batches.append(batches[len(batches) % max(1, len(batches))][:1])
            break
        b = batches[i]
        half = len(b) // 2
        batches[i : i + 1] = [b[:half], b[half:]]
    return batches


class _Batches(Dataset):
    """Item k is the k-th planned batch, fully built: workers build whole batches, not single examples."""

    def __init__(self, examples: Examples, batches: list[np.ndarray], keys: tuple[int, ...], augment: bool):
        self.examples, self.batches, self.keys, self.augment = examples, batches, keys, augment

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        number, indices = self.batches[k]
        rng = _rng(*self.keys, number) if self.augment else None
        return self.examples.batch(indices, rng)


class Loader:
    """An iterable of batch dicts for one rank and one epoch; ``len()`` is its number of batches."""

    def __init__(
        self,
        examples: Examples,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        bucket: bool = True,
        num_workers: int = 0,
        drop_last: bool = False,
        augment: bool = False,
    ):
        if not 0 <= rank < world_size:
            raise SoraError(f"rank {rank} is not in [0, world_size={world_size})")
        if start_batch < 0:
            raise SoraError(f"start_batch must be >= 0 (got {start_batch})")
        self.examples, self.num_workers = examples, num_workers
        self.augment = augment
        self.seed, self.epoch = seed, epoch
        planned = plan_batches(
            examples.lengths,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            bucket=bucket,
            drop_last=drop_last,
            world_size=world_size,
        )
        mine = list(enumerate(planned))[rank::world_size]
        self.batches = mine[start_batch:]  # resuming skips planned batches without building them

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        data = _Batches(self.examples, self.batches, (self.seed, self.epoch), self.augment)
        if self.num_workers <= 0:
            return (data[k] for k in range(len(data)))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        loader = DataLoader(
            data,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=False,
            prefetch_factor=2,
        )
        return iter(loader)

    def padding_fraction(self) -> float:
        """Share of the padded (B, T) positions that are padding, over this loader's batches."""
        lengths = self.examples.lengths
        real = sum(int(lengths[b].sum()) for _, b in self.batches)
        padded = sum(int(lengths[b].max()) * len(b) for _, b in self.batches if len(b))
        return 1.0 - real / padded if padded else 0.0
