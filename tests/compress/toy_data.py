"""A tiny prepared dataset with sora.data's interface: classes are told apart by their token range."""

from __future__ import annotations

import torch

from sora.data.protocol import TaskData


class ToyClassification(TaskData):
    task, input, tokenizer, name = "classification", "text", None, "toy"
    labels = ["low", "mid", "high"]

    def __init__(self, n_train: int = 96, n_eval: int = 48, seq_len: int = 10, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.splits = {
            s: self._examples(n, seq_len, g) for s, n in (("train", n_train), ("validation", n_eval), ("test", n_eval))
        }

    @staticmethod
    def _examples(n, T, g):
        labels = torch.randint(0, 3, (n,), generator=g)
        lengths = torch.randint(T // 2, T + 1, (n,), generator=g)
        ids = torch.zeros(n, T, dtype=torch.long)
        for i in range(n):
            lo = 3 + 15 * int(labels[i])
            ids[i, : lengths[i]] = torch.randint(lo, lo + 15, (int(lengths[i]),), generator=g)
        return ids, labels

    def num_batches(self, split, batch_size, world_size=1, drop_last=False):
        return -(-len(self.splits[split][0]) // batch_size)

    def loader(self, split, batch_size, *, shuffle=False, seed=0, epoch=0, **_):
        ids, labels = self.splits[split]
        order = (
            torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            if shuffle
            else torch.arange(len(ids))
        )
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            yield {"inputs": ids[rows], "valid": ids[rows] != 0, "labels": labels[rows]}
