"""Streaming shards: the same rows as in memory, split by a stable hash, disjoint equal shards per rank."""

from __future__ import annotations

import json

import pytest
import torch

from sora.data import DataConfig
from sora.data.stream import StreamingData, split_of, train_stream_tokenizer
from sora.errors import SoraError
from tests.data.util import sentiment_rows, write_csv


@pytest.fixture
def shards(tmp_path):
    rows = sentiment_rows(230)
    for k in range(3):
        write_csv(tmp_path / f"part-{k}.csv", rows[k::3])
    return tmp_path / "part-*.csv", rows


def _cfg(glob, **extra):
    return DataConfig.model_validate(
        {
            "source": str(glob),
            "label_names": ["neg", "pos"],
            "tokenizer": {"kind": "wordpiece", "vocab_size": 200},
            **extra,
        }
    )


def test_stream_splits_are_stable_disjoint_and_complete(shards):
    glob, rows = shards
    cfg = _cfg(glob)
    data = StreamingData(cfg, train_stream_tokenizer(cfg))
    seen = {s: [t for _, t, _ in data.examples(s)] for s in ("train", "validation", "test")}
    assert sorted(sum(seen.values(), [])) == sorted(t for _, t in rows)
    assert 10 <= len(seen["validation"]) <= 40 and 10 <= len(seen["test"]) <= 40
    assert seen["train"] == [t for _, t, _ in data.examples("train")]  # same rows every pass
    assert split_of("a.csv:3", 0, 0.1, 0.1) == split_of("a.csv:3", 0, 0.1, 0.1)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_stream_ranks_get_disjoint_equal_shards(shards, world_size):
    glob, _ = shards
    cfg = _cfg(glob, split={"validation": 0.0, "test": 0.0})
    data = StreamingData(cfg, train_stream_tokenizer(cfg))
    per_rank = [
        list(data.loader("train", 8, shuffle=True, seed=1, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    assert len({len(b) for b in per_rank}) == 1  # every rank runs the same number of steps
    tok = data.tokenizer
    numbers = [
        tok.decode(x[v].tolist()).split("number")[-1].strip()
        for batches in per_rank
        for b in batches
        for x, v in zip(b["inputs"], b["valid"])
    ]
    assert len(numbers) == len(set(numbers))  # disjoint: no row on two ranks, none twice
    assert 230 - world_size < len(numbers) <= 230  # complete but for fewer than world_size rows
    first = list(data.loader("train", 8, shuffle=True, seed=1, rank=0, world_size=world_size))
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(first, per_rank[0]))


def test_stream_with_workers_and_buffers_keeps_every_row(shards):
    glob, _ = shards
    cfg = _cfg(glob, split={"validation": 0.0, "test": 0.0})
    data = StreamingData(cfg, train_stream_tokenizer(cfg), buffer_batches=2)
    labels = torch.cat([b["labels"] for b in data.loader("train", 10, shuffle=True, num_workers=2)])
    assert len(labels) == 230 and int(labels.sum()) == 115


def test_stream_lm_blocks(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": f"line {i} of the corpus."}) + "\n" for i in range(300)))
    cfg = DataConfig.model_validate(
        {
            "source": str(path),
            "task": "lm",
            "block_size": 16,
            "tokenizer": {"kind": "char"},
            "split": {"validation": 0.0, "test": 0.0},
        }
    )
    data = StreamingData(cfg, train_stream_tokenizer(cfg))
    batches = list(data.loader("train", 4, rank=1, world_size=2))
    assert batches and all(b["inputs"].shape == (4, 16) for b in batches)
    assert torch.equal(batches[0]["inputs"][:, 1:], batches[0]["labels"][:, :-1])


def test_stream_needs_label_names_and_a_source(shards):
    glob, _ = shards
    with pytest.raises(SoraError, match="label_names"):
        StreamingData(DataConfig(source=str(glob)), None)
    with pytest.raises(SoraError, match="reads a data.source"):
        StreamingData(DataConfig(dataset="digits"), None)


def test_stream_offers_what_the_stages_read(shards):
    """The members of TaskData that training reads: counts that match the loader, and the model's fields."""
    glob, _ = shards
    cfg = _cfg(glob, split={"validation": 0.2, "test": 0.0})
    data = StreamingData(cfg, train_stream_tokenizer(cfg))
    assert data.num_batches("train", 8) == len(list(data.loader("train", 8))) > 0
    assert data.has_split("validation") and not data.has_split("test")
    fields = data.model_fields()
    assert fields["n_classes"] == 2 and fields["vocab_size"] == data.tokenizer.get_vocab_size()
    assert data.config is cfg and data.name == str(glob)
