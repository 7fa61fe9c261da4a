"""Tiny in-memory datasets with the prepared-data interface of sora.data, for trainer tests.

They follow the batch contract and the loader's promises: batches are deterministic per
(seed, epoch), ``start_batch`` skips ahead, and under data parallelism rank r of W takes the
r-th slice of each *global* batch of ``batch_size * W`` examples, so W processes see exactly the
examples one process sees.
"""

from __future__ import annotations

import math

import torch

from sora.data.protocol import TaskData


class SyntheticData(TaskData):
    def __init__(
        self,
        task: str = "classification",
        n: int = 96,
        seq_len: int = 12,
        seed: int = 0,
        n_val: int = 32,
        n_test: int = 32,
        vocab_size: int = 50,
    ):
        self.task, self.vocab_size, self.seq_len = task, vocab_size, seq_len
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.tokenizer, self.name = None, f"synthetic_{task}"
        self.labels = {"classification": ["low", "mid", "high"], "ctc": ["_", "a", "b"]}.get(task)
        g = torch.Generator().manual_seed(seed)
        self.examples = {
            split: [self._example(g) for _ in range(size)]
            for split, size in (("train", n), ("validation", n_val), ("test", n_test))
            if size
        }
        self.splits = list(self.examples)

    # -- examples ----------------------------------------------------------------------------------

    def _example(self, g: torch.Generator) -> dict:
        T = self.seq_len
        if self.task == "classification":
            label = int(torch.randint(0, 3, (1,), generator=g))
            length = int(torch.randint(T // 2, T + 1, (1,), generator=g))
            lo = 3 + label * 15
            return {"ids": torch.randint(lo, lo + 15, (length,), generator=g), "label": label}
        if self.task == "lm":
            period = int(torch.randint(2, 5, (1,), generator=g))
            start = int(torch.randint(3, 40, (1,), generator=g))
            seq = torch.tensor([start + (i % period) for i in range(T + 1)])
            return {"ids": seq}
        if self.task == "seq2seq":
            length = int(torch.randint(2, T - 1, (1,), generator=g))
            return {"src": torch.randint(3, self.vocab_size, (length,), generator=g)}
        if self.task == "ctc":
            length = int(torch.randint(1, 4, (1,), generator=g))
            targets = torch.randint(1, 3, (length,), generator=g)
            mels = torch.randn(8, 16, generator=g)
            mels[targets[0] - 1] += 3.0  # a hint, so the task is learnable
            return {"mels": mels, "targets": targets}
        raise ValueError(self.task)

    def _collate(self, rows: list[dict]) -> dict:
        if self.task == "classification":
            T = max(len(r["ids"]) for r in rows)
            ids = torch.zeros(len(rows), T, dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r["ids"])] = r["ids"]
            return {"inputs": ids, "valid": ids != 0, "labels": torch.tensor([r["label"] for r in rows])}
        if self.task == "lm":
            seq = torch.stack([r["ids"] for r in rows])
            return {"inputs": seq[:, :-1], "labels": seq[:, 1:]}
        if self.task == "seq2seq":
            S = max(len(r["src"]) for r in rows)
            src = torch.zeros(len(rows), S, dtype=torch.long)
            tgt_in = torch.zeros(len(rows), S + 1, dtype=torch.long)
            tgt_out = torch.full((len(rows), S + 1), -100, dtype=torch.long)
            for i, r in enumerate(rows):
                s, n = r["src"], len(r["src"])
                src[i, :n] = s
                tgt_in[i, 0], tgt_in[i, 1 : n + 1] = self.bos_id, s.flip(0)
                tgt_out[i, :n], tgt_out[i, n] = s.flip(0), self.eos_id
            return {
                "src": src,
                "src_valid": src != 0,
                "tgt_in": tgt_in,
                "tgt_out": tgt_out,
                "tgt_valid": tgt_out != -100,
            }
        if self.task == "ctc":
            L = max(len(r["targets"]) for r in rows)
            targets = torch.zeros(len(rows), L, dtype=torch.long)
            for i, r in enumerate(rows):
                targets[i, : len(r["targets"])] = r["targets"]
            return {
                "inputs": torch.stack([r["mels"] for r in rows]),
                "valid": torch.ones(len(rows), 16, dtype=torch.bool),
                "targets": targets,
                "target_lengths": torch.tensor([len(r["targets"]) for r in rows]),
            }
        raise ValueError(self.task)

    # -- the prepared-data interface -------------------------------------------------------------------

    def num_batches(self, split: str, batch_size: int, world_size: int = 1) -> int:
        n = len(self.examples[split])
        return n // (batch_size * world_size) if world_size > 1 else math.ceil(n / batch_size)

    def loader(
        self,
        split,
        batch_size,
        *,
        shuffle=False,
        seed=0,
        epoch=0,
        start_batch=0,
        rank=0,
        world_size=1,
        bucket=True,
        num_workers=0,
        drop_last=False,
    ):
        rows = self.examples[split]
        order = list(range(len(rows)))
        if shuffle:
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        glob = batch_size * world_size
        for b in range(start_batch, self.num_batches(split, batch_size, world_size)):
            chunk = order[b * glob : (b + 1) * glob][rank * batch_size : (rank + 1) * batch_size]
            yield self._collate([rows[i] for i in chunk])
