"""Loaders: deterministic plans, exact resume, disjoint and complete DDP shards, bucketing, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sora.data import DataConfig, prepare_data
from sora.data.datasets import TextClassification
from sora.data.loader import Loader, count_batches, plan_batches
from tests.data.util import sentiment_rows, write_csv


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = write_csv(tmp_path_factory.mktemp("loader") / "r.csv", sentiment_rows(203))
    return prepare_data(
        DataConfig.model_validate({"source": str(path), "tokenizer": {"kind": "wordpiece", "vocab_size": 300}})
    )


def _ids(batches) -> list[tuple]:
    return [tuple(map(tuple, b["inputs"].tolist())) for b in batches]


def test_batches_follow_the_contract(data):
    batch = next(iter(data.loader("train", 16, shuffle=True)))
    assert set(batch) == {"inputs", "valid", "labels"}
    assert batch["inputs"].dtype == torch.long and batch["valid"].dtype == torch.bool
    assert batch["labels"].shape == (16,)
    assert torch.equal(batch["valid"], batch["inputs"] != data.pad_id)
    assert (batch["inputs"][:, 0] == data.tokenizer.token_to_id("[CLS]")).all()
    assert batch["valid"].sum(1).max() == batch["inputs"].shape[1]  # padded to the longest, no further


def test_same_seed_and_epoch_same_batches_other_epoch_other_order(data):
    a = _ids(data.loader("train", 16, shuffle=True, seed=1, epoch=2))
    b = _ids(data.loader("train", 16, shuffle=True, seed=1, epoch=2))
    c = _ids(data.loader("train", 16, shuffle=True, seed=1, epoch=3))
    assert a == b and a != c
    assert len(a) == data.num_batches("train", 16)


def test_start_batch_resumes_exactly(data):
    full = _ids(data.loader("train", 8, shuffle=True, seed=0, epoch=1))
    resumed = data.loader("train", 8, shuffle=True, seed=0, epoch=1, start_batch=5)
    assert len(resumed) == len(full) - 5 and _ids(resumed) == full[5:]


@pytest.mark.parametrize(
    "world_size,batch_size,drop_last", [(2, 8, False), (3, 8, False), (4, 16, False), (3, 7, True)]
)
def test_ddp_shards_are_disjoint_complete_and_equal(world_size, batch_size, drop_last):
    lengths = np.random.default_rng(0).integers(1, 60, size=163)
    plans = [
        Loader(
            _FakeText(lengths),
            batch_size,
            shuffle=True,
            seed=5,
            epoch=1,
            rank=r,
            world_size=world_size,
            drop_last=drop_last,
        ).batches
        for r in range(world_size)
    ]
    counts = {len(p) for p in plans}
    assert counts == {count_batches(163, batch_size, world_size, drop_last)}  # same number of steps on every rank
    seen = [i for p in plans for _, b in p for i in b.tolist()]
    assert len(seen) == len(set(seen))  # disjoint
    if not drop_last:
        assert sorted(seen) == list(range(163))  # complete
    else:
        assert all(len(b) == batch_size for p in plans for _, b in p)


def test_bucketing_cuts_padding_and_keeps_every_example(data):
    examples = data.splits["train"]
    naive = data.loader("train", 16, shuffle=True, bucket=False)
    bucketed = data.loader("train", 16, shuffle=True, bucket=True)
    assert bucketed.padding_fraction() < 0.5 * naive.padding_fraction()
    seen = sorted(i for _, b in bucketed.batches for i in b.tolist())
    assert seen == list(range(len(examples)))
    epochs = [[tuple(b.tolist()) for _, b in data.loader("train", 16, shuffle=True, epoch=e).batches] for e in (0, 1)]
    assert epochs[0] != epochs[1]  # still shuffled between epochs


def test_workers_give_the_same_batches(data):
    direct = list(data.loader("train", 32, shuffle=True, seed=3))
    workers = list(data.loader("train", 32, shuffle=True, seed=3, num_workers=2))
    assert len(direct) == len(workers)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(direct, workers) for k in a)


def test_plan_without_shuffle_or_bucket_is_arrival_order():
    plan = plan_batches(np.ones(10, dtype=np.int64), 4, shuffle=False, seed=0, epoch=0, bucket=False)
    assert [b.tolist() for b in plan] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


class _FakeText(TextClassification):
    def __init__(self, lengths):
        super().__init__([np.ones(n, dtype=np.int32) for n in lengths], np.zeros(len(lengths)))
