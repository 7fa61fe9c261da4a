"""Streaming: batches from row-format shards (CSV, TSV, JSONL, Parquet, text) that never sit whole in memory.

``prepare_data`` reads a dataset into memory, which suits everything built in. For shards larger than
memory, ``StreamingData`` reads rows lazily, file by file (Parquet row group by row group), and keeps
only a buffer of rows. What stays the same as in memory:

- **splits** without a global shuffle: each row goes to train/validation/test by a hash of its
  place (file and line) and the seed, so a row's split never changes between runs or readers;
- **bucketing** inside each buffer: rows are sorted by length, cut into batches, and the batches of
  a buffer are shuffled from (seed, epoch, buffer number);
- **ranks**: every rank reads the same rows and, from each group of ``world_size`` consecutive
  batches, takes its own: disjoint, with the same number of batches on every rank (a final group too
  small to give each rank a batch is split as evenly as possible, or dropped if under world_size rows);
- **workers**: worker k of a rank builds buffers k, k + num_workers, ...

The tokenizer must exist before streaming starts: pass one, or ``train_stream_tokenizer`` trains one
on the first rows of the training split.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterator

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sora.data.config import DataConfig
from sora.data.datasets import TextClassification
from sora.data.formats import ROW_FORMATS, infer_format, iter_rows
from sora.data.loader import _rng
from sora.data.protocol import TaskData
from sora.data.sources import list_files
from sora.data.table import RowErrors, label_problem, text_problem
from sora.data.tokenizer import BOS, EOS, configure_for_task, special_id, train_tokenizer
from sora.errors import SoraError


def split_of(where: str, seed: int, validation: float, test: float) -> str:
    """The split of the row at ``where`` ("file:line"): stable, independent of every other row."""
    digest = hashlib.blake2b(f"{seed}:{where}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    return "validation" if u < validation else "test" if u < validation + test else "train"


def stream_files(cfg: DataConfig, split: str) -> list[str]:
    """The files ``split`` reads: its own source when the source is a mapping of splits, else all of them."""
    src = cfg.source
    url = src.get(split) if isinstance(src, dict) else src
    return list_files(url, cfg.storage_options) if url else []


def stream_rows(cfg: DataConfig, split: str, errors: RowErrors | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of ``split``, lazily, in file order, as (where, row)."""
    errors = errors or RowErrors(cfg.on_error)
    given = isinstance(cfg.source, dict)
    s = cfg.split
    for url in stream_files(cfg, split):
        fmt = cfg.format or infer_format(url, cfg.storage_options)
        if fmt not in ROW_FORMATS:
            raise SoraError(f"{url}: streaming reads {', '.join(ROW_FORMATS)}, not {fmt}")
        for where, row in iter_rows(url, fmt, errors, cfg.storage_options, whole_text=False):
            if given or split_of(where, s.seed, s.validation, s.test) == split:
                yield where, row
    errors.report(f"{cfg.source}")


class StreamingData(TaskData):
    """Streaming counterpart of ``Prepared`` for text classification and language modelling.

    Counting a split's batches (``num_batches``) reads the split once; the count is kept.
    """

    modality = "text"

    def __init__(self, cfg: DataConfig, tokenizer: Tokenizer, *, buffer_batches: int = 50):
        if cfg.source is None:
            raise SoraError("streaming reads a data.source (built-in datasets fit in memory: use prepare_data)")
        self.cfg, self.buffer_batches = cfg, buffer_batches
        self.name = str(cfg.source)
        self._counts: dict[tuple, int] = {}
        self.task = cfg.task or "classification"
        if self.task not in ("classification", "lm"):
            raise SoraError(f"data.task: streaming supports classification and lm, not '{self.task}'")
        if self.task == "classification" and not cfg.label_names:
            raise SoraError(
                "data.label_names: streaming classification needs the labels listed up front "
                "(the stream is never read whole to find them)"
            )
        self.labels = list(cfg.label_names) if self.task == "classification" else None
        self.tokenizer = configure_for_task(
            Tokenizer.from_str(tokenizer.to_str()), self.task, cfg.max_len, pretrained=True
        )

    @property
    def config(self) -> DataConfig:
        return self.cfg

    def preprocessing(self) -> None:
        return None  # text only: the tokenizer is the preprocessing

    def model_fields(self) -> dict[str, Any]:
        """The ModelConfig keys this data decides, as ``Prepared.model_fields``."""
        out: dict[str, Any] = {"input": "text", "vocab_size": self.tokenizer.get_vocab_size(), "pad_id": 0}
        if self.labels is not None:
            out["n_classes"] = len(self.labels)
        if self.task == "lm":
            out.update(bos_id=special_id(self.tokenizer, BOS), eos_id=special_id(self.tokenizer, EOS))
        return out

    def num_batches(self, split: str, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
        """Batches per rank that ``loader`` gives for ``split`` (one pass over it, then remembered)."""
        key = (split, batch_size, world_size)
        if key not in self._counts:
            self._counts[key] = sum(1 for _ in self.loader(split, batch_size, world_size=world_size))
        return self._counts[key]

    # ---- rows

    def files(self, split: str) -> list[str]:
        return stream_files(self.cfg, split)

    def rows(self, split: str, errors: RowErrors | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """The rows of ``split``, lazily, in file order."""
        return stream_rows(self.cfg, split, errors)

    def examples(self, split: str) -> Iterator[tuple[str, str, int | None]]:
        """(where, text, label id) for each row; bad rows fail or are skipped per ``on_error``."""
        errors = RowErrors(self.cfg.on_error)
        text_col = self.cfg.column("text", "text")
        label_col = self.cfg.column("label", "label")
        index = {n: i for i, n in enumerate(self.labels or [])}
        for where, row in self.rows(split, errors):
            text = row.get(text_col)
            problem = text_problem(text, text_col, "text", empty_ok=self.task == "lm")
            if problem:
                errors.bad(where, problem)
                continue
            label = None
            if self.task == "classification":
                value = row.get(label_col)
                problem = label_problem(value, label_col)
                if problem:
                    errors.bad(where, problem)
                    continue
                key = str(value).strip()
                if key in index:
                    label = index[key]
                elif isinstance(value, int) and 0 <= value < len(index):
                    label = value
                else:
                    errors.bad(where, f"unknown label {key!r} in column '{label_col}' (labels: {', '.join(index)})")
                    continue
            yield where, str(text), label

    # ---- batches

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        bucket: bool = True,
        num_workers: int = 0,
    ):
        """An iterable of batch dicts (the same contract as ``Prepared.loader``)."""
        if not 0 <= rank < world_size:
            raise SoraError(f"rank {rank} is not in [0, world_size={world_size})")
        data = _Stream(self, split, batch_size, shuffle, seed, epoch, rank, world_size, bucket)
        if num_workers <= 0:
            return data
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return DataLoader(data, batch_size=None, num_workers=num_workers)


class _Stream(IterableDataset):
    def __init__(self, source: StreamingData, split, batch_size, shuffle, seed, epoch, rank, world_size, bucket):
        self.s, self.split, self.batch_size = source, split, batch_size
        self.shuffle, self.seed, self.epoch, self.bucket = shuffle, seed, epoch, bucket
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if self.s.task == "lm":
            yield from self._lm_batches(worker, workers)
        else:
            yield from self._classification_batches(worker, workers)

    def _buffers(self, size: int) -> Iterator[list]:
        buf: list = []
        for item in self.s.examples(self.split):
            buf.append(item)
            if len(buf) == size:
                yield buf
                buf = []
        if buf:
            yield buf

    def _classification_batches(self, worker: int, workers: int) -> Iterator[dict[str, torch.Tensor]]:
        group = self.batch_size * self.world_size  # rows that give every rank one batch
        tok = self.s.tokenizer
        for number, buf in enumerate(self._buffers(group * self.s.buffer_batches)):
            if number % workers != worker:
                continue
            ids = [np.asarray(e.ids, dtype=np.int32) for e in tok.encode_batch([t for _, t, _ in buf])]
            examples = TextClassification(ids, np.asarray([l for _, _, l in buf]), [t for _, t, _ in buf])
            rng = _rng(self.seed, self.epoch, number)
            order = rng.permutation(len(buf)) if self.shuffle else np.arange(len(buf))
            if self.bucket:
                order = order[np.argsort(examples.lengths[order], kind="stable")]
            groups = [order[i : i + group] for i in range(0, len(order), group)]
            if self.shuffle:
                groups = [groups[i] for i in rng.permutation(len(groups))]
            for g in groups:
                if len(g) == group:
                    mine = g[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
                elif len(g) >= self.world_size:  # a short last group: split evenly, one batch each
                    mine = g[self.rank :: self.world_size]
                else:
                    continue
                yield examples.batch(mine)

    def _lm_batches(self, worker: int, workers: int) -> Iterator[dict[str, torch.Tensor]]:
        """Contiguous token blocks across rows (joined by [EOS]); a group of batches per buffer."""
        T, tok = self.s.cfg.block_size, self.s.tokenizer
        eos = special_id(tok, EOS)
        group = self.batch_size * self.world_size
        need = group * (T + 1)
        pending: list[np.ndarray] = []
        have, number = 0, 0
        for _, text, _ in self.s.examples(self.split):
            ids = np.asarray(tok.encode(text).ids, dtype=np.int64)
            pending.append(ids if eos is None else np.append(ids, eos))
            have += len(pending[-1])
            while have >= need:
                stream = np.concatenate(pending)
                chunk, rest = stream[:need], stream[need:]
                pending, have = [rest], len(rest)
                if number % workers == worker:
                    windows = torch.from_numpy(chunk.reshape(group, T + 1))  # (group, T + 1), no overlap
                    windows = windows[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
                    yield {"inputs": windows[:, :-1].contiguous(), "labels": windows[:, 1:].contiguous()}
                number += 1


def train_stream_tokenizer(cfg: DataConfig, max_rows: int = 100_000) -> Tokenizer:
    """Train ``cfg.tokenizer`` on the first ``max_rows`` training rows of a streamed source."""
    texts = []
    text_col = cfg.column("text", "text")
    for _, row in stream_rows(cfg, "train"):
        if row.get(text_col) is not None:
            texts.append(str(row[text_col]))
        if len(texts) >= max_rows:
            break
    if not texts:
        raise SoraError(f"{cfg.source}: no training rows to train a tokenizer on")
    return train_tokenizer(texts, cfg.tokenizer, cfg.normalize)
