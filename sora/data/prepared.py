"""``Prepared``: a dataset ready for training, its splits of examples with the tokenizer and labels.

``prepare_data`` (sora.data.prepare) makes one from a ``data:`` config; ``loader`` turns a split into
batches, ``model_fields`` says what the data decides of a model's config, ``describe`` is what
``sora data show`` prints.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from sora.data.config import DataConfig
from sora.data.datasets import Examples, Rows, TextClassification
from sora.data.encoding import encode
from sora.data.loader import Loader, count_batches
from sora.data.preprocess import describe_preprocessing
from sora.data.protocol import TaskData
from sora.data.tokenizer import BOS, EOS, PAD, special_id
from sora.errors import SoraError


@dataclass
class Prepared(TaskData):
    """Ready data: splits of examples, the tokenizer and labels, and loaders over them (``TaskData``)."""

    config: DataConfig
    task: str
    modality: str  # text | image | audio
    tokenizer: Tokenizer | None
    labels: list[str] | None
    splits: dict[str, Examples]
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int | None:
        return self.tokenizer.get_vocab_size() if self.tokenizer is not None else None

    @property
    def pad_id(self) -> int | None:
        return special_id(self.tokenizer, PAD) if self.tokenizer is not None else None

    @property
    def bos_id(self) -> int | None:
        return special_id(self.tokenizer, BOS) if self.tokenizer is not None else None

    @property
    def eos_id(self) -> int | None:
        return special_id(self.tokenizer, EOS) if self.tokenizer is not None else None

    def _split(self, split: str) -> Examples:
        if split not in self.splits:
            raise SoraError(f"no split '{split}' (splits: {', '.join(self.splits)})")
        return self.splits[split]

    def loader(
        self,
        split: str,
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
        rows: np.ndarray | None = None,
    ) -> Loader:
        """Batches of ``split`` for one rank and epoch (see sora.data.loader); augmentation on train only.
        ``rows``: only these examples of the split (one group's, for metrics by group)."""
        examples = self._split(split) if rows is None else Rows(self._split(split), rows)
        return Loader(
            examples,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            start_batch=start_batch,
            rank=rank,
            world_size=world_size,
            bucket=bucket,
            num_workers=num_workers,
            drop_last=drop_last,
            augment=split == "train",
        )

    def extra_splits(self) -> list[str]:
        return [k for k in self.splits if k not in ("train", "validation", "test")]

    def num_batches(self, split: str, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
        return count_batches(len(self._split(split)), batch_size, world_size, drop_last)

    def column(self, split: str, name: str) -> list:
        """One value per example of ``split`` from the source's column ``name`` (metrics are grouped by it)."""
        columns = self._split(split).columns
        if name not in columns:
            have = ", ".join(sorted(columns)) or "none"
            raise SoraError(
                f"{self.name or 'the data'}: no column '{name}' to group by in the {split} split (has {have})"
            )
        return list(columns[name])

    def model_fields(self) -> dict[str, Any]:
        """The ModelConfig keys this data decides: input kind, vocabulary, classes, special ids, sizes."""
        out: dict[str, Any] = {"input": self.modality}
        if self.tokenizer is not None:
            out.update(vocab_size=self.vocab_size, pad_id=self.pad_id or 0)
            if self.task in ("lm", "seq2seq"):
                out.update(bos_id=self.bos_id, eos_id=self.eos_id)
        if self.labels is not None:
            out["n_classes"] = len(self.labels)
        if self.task == "span" or getattr(self.splits["train"], "segments", None) is not None:
            out["segments"] = 2  # text pairs: a segment embedding tells their two texts apart
        if self.modality == "image":
            images = self.splits["train"].images
            out["image"] = {"size": int(images.shape[1]), "channels": int(images.shape[3])}
        if self.modality == "audio":
            out["audio"] = {"n_mels": self.config.n_mels}
        return out

    def preprocessing(self) -> dict[str, Any] | None:
        """How images or audio were normalised (JSON-able; for meta.json); apply it with sora.data.preprocess."""
        return describe_preprocessing(self.splits["train"])

    def texts(self, split: str) -> list[str]:
        """The raw texts of a text-classification split (what its ids were encoded from)."""
        examples = self._split(split)
        if not isinstance(examples, TextClassification) or examples.texts is None:
            raise SoraError(f"the {self.task} data's '{split}' split keeps no texts (text classification does)")
        return examples.texts

    def retokenized(self, tokenizer: Tokenizer) -> Prepared:
        """The same examples encoded with another tokenizer (e.g. a vocabulary-pruned one)."""
        splits = {
            k: TextClassification(encode(tokenizer, self.texts(k)), v.labels, v.texts) for k, v in self.splits.items()
        }
        return Prepared(self.config, self.task, self.modality, tokenizer, self.labels, splits, self.name, self.info)

    def describe(self, n_examples: int = 3) -> dict[str, Any]:
        """Sizes, splits, label counts and a few examples: what ``sora data show`` prints."""
        out: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "modality": self.modality,
            "splits": {k: len(v) for k, v in self.splits.items()},
        }
        if self.tokenizer is not None:
            out["vocab_size"] = self.vocab_size
        if self.labels is not None:
            out["labels"] = self.labels
            counts = {}
            for split, ex in self.splits.items():
                if getattr(ex, "labels", None) is not None:
                    c = Counter(int(i) for i in ex.labels)
                    counts[split] = {self.labels[i]: c.get(i, 0) for i in range(len(self.labels))}
            if counts:
                out["label_counts"] = counts
        lengths = {k: v.lengths for k, v in self.splits.items() if len(v)}
        unit = {"text": "tokens", "image": "pixels", "audio": "frames"}[self.modality]
        out[f"length_{unit}"] = {
            k: {"mean": round(float(v.mean()), 1), "max": int(v.max())} for k, v in lengths.items()
        }
        train = self.splits["train"]
        out["examples"] = [_plain(train.example(i)) for i in range(min(n_examples, len(train)))]
        if self.task == "classification" and self.labels:
            for ex in out["examples"]:
                ex["label"] = self.labels[ex["label"]]
        if self.task == "lm" and self.tokenizer is not None and len(train):
            ids = train.stream[: min(200, len(train.stream))]
            out["examples"] = [{"text": self.tokenizer.decode(ids.tolist(), skip_special_tokens=False)}]
        out.update(self.info)
        return out


def _plain(d: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()}
