"""``prepare_data``: from a ``data:`` config to ready splits, a tokenizer and loaders (``Prepared``).

The steps, in order: read the source (a built-in or any URL), check every row (missing values,
unknown labels: fail naming file:line, or skip and count), split (given, grouped, stratified,
random, or contiguous for language modelling), cap each split (``limit``), train the tokenizer on
the training split only, then encode. ``Prepared.loader`` turns a split into batches.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from sora.data import builtin, splits as sp
from sora.data.builtin import Raw
from sora.data.config import DataConfig
from sora.data.datasets import Audio, Examples, Images, LMBlocks, Seq2SeqPairs, TextClassification
from sora.data.loader import Loader, count_batches
from sora.data.read import read_source
from sora.data.table import RowErrors, Table, label_problem, text_problem
from sora.data.tokenizer import BOS, EOS, PAD, char_vocab, configure_for_task, encode_chars, load_tokenizer_file, \
    special_id, train_tokenizer
from sora.errors import SoraError, SoraWarning

SPLITS = ("train", "validation", "test")
BLANK = "<blank>"


class UnseenLabelsWarning(SoraWarning):
    """A validation or test split has labels that no training example has: the model cannot learn them."""


@dataclass
class Prepared:
    """Ready data: splits of examples, the tokenizer and labels, and loaders over them."""

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

    def loader(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
               start_batch: int = 0, rank: int = 0, world_size: int = 1, bucket: bool = True, num_workers: int = 0,
               drop_last: bool = False) -> Loader:
        """Batches of ``split`` for one rank and epoch (see sora.data.loader); augmentation on train only."""
        examples = self._split(split)
        return Loader(examples, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, start_batch=start_batch,
                      rank=rank, world_size=world_size, bucket=bucket, num_workers=num_workers,
                      drop_last=drop_last, augment=split == "train")

    def num_batches(self, split: str, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
        return count_batches(len(self._split(split)), batch_size, world_size, drop_last)

    def model_fields(self) -> dict[str, Any]:
        """The ModelConfig keys this data decides: input kind, vocabulary, classes, special ids, sizes."""
        out: dict[str, Any] = {"input": self.modality}
        if self.tokenizer is not None:
            out.update(vocab_size=self.vocab_size, pad_id=self.pad_id or 0)
            if self.task in ("lm", "seq2seq"):
                out.update(bos_id=self.bos_id, eos_id=self.eos_id)
        if self.labels is not None:
            out["n_classes"] = len(self.labels)
        if self.modality == "image":
            images = self.splits["train"].images
            out["image"] = {"size": int(images.shape[1]), "channels": int(images.shape[3])}
        if self.modality == "audio":
            out["audio"] = {"n_mels": self.config.n_mels}
        return out

    def preprocessing(self) -> dict[str, Any] | None:
        """How images or audio were normalised (JSON-able; for meta.json); apply it with sora.data.preprocess."""
        from sora.data.preprocess import describe_preprocessing

        return describe_preprocessing(self.splits["train"])

    def texts(self, split: str) -> list[str]:
        """The raw texts of a text-classification split (what its ids were encoded from)."""
        examples = self._split(split)
        if not isinstance(examples, TextClassification) or examples.texts is None:
            raise SoraError(f"the {self.task} data's '{split}' split keeps no texts (text classification does)")
        return examples.texts

    def retokenized(self, tokenizer: Tokenizer) -> Prepared:
        """The same examples encoded with another tokenizer (e.g. a vocabulary-pruned one)."""
        splits = {k: TextClassification(_encode(tokenizer, self.texts(k)), v.labels, v.texts)
                  for k, v in self.splits.items()}
        return Prepared(self.config, self.task, self.modality, tokenizer, self.labels, splits, self.name, self.info)

    def describe(self, n_examples: int = 3) -> dict[str, Any]:
        """Sizes, splits, label counts and a few examples: what ``sora data show`` prints."""
        out: dict[str, Any] = {"name": self.name, "task": self.task, "modality": self.modality,
                               "splits": {k: len(v) for k, v in self.splits.items()}}
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
        out[f"length_{unit}"] = {k: {"mean": round(float(v.mean()), 1), "max": int(v.max())} for k, v in lengths.items()}
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


# ---------------------------------------------------------------- prepare


def prepare_data(cfg: DataConfig | dict, tokenizer: Tokenizer | None = None) -> Prepared:
    """Read, check, split, tokenize: everything before batching. Pass ``tokenizer`` to reuse one."""
    if isinstance(cfg, dict):
        from sora.configio import validate

        cfg = validate(DataConfig, cfg, source="data", prefix=("data",))
    entry = builtin.get(cfg.dataset) if cfg.dataset else None
    task = cfg.task or (entry.task if entry else "classification")
    errors = RowErrors(cfg.on_error)
    raw = builtin.load(cfg.dataset, cfg, task) if entry else read_source(cfg, task, errors)
    name = cfg.dataset or (cfg.source if isinstance(cfg.source, str) else cfg.source["train"])
    if sum(len(t) for t in raw.tables.values()) == 0:
        raise SoraError(f"{name}: the dataset is empty (no rows{_skipped(errors)})")
    columns = {**raw.columns, **cfg.columns}
    builder = {"classification": _classification, "lm": _lm, "seq2seq": _seq2seq, "ctc": _ctc}[task]
    prepared = builder(cfg, raw, columns, errors, tokenizer, name)
    prepared.name = name
    errors.report(name)
    if errors.skipped:
        prepared.info["skipped_rows"] = len(errors.skipped)
    if len(prepared.splits["train"]) == 0:
        short = (f" (its {len(prepared.splits['train'].stream)} tokens do not fill one block of data.block_size="
                 f"{cfg.block_size} plus the next token)") if task == "lm" else ""
        raise SoraError(f"{name}: the training split is empty{short}{_skipped(errors)}")
    return prepared


def _skipped(errors: RowErrors) -> str:
    return f"; {len(errors.skipped)} bad rows skipped, first: {errors.skipped[0]}" if errors.skipped else ""


def _modality(tables: dict[str, Table], columns: dict[str, str]) -> str:
    first = next(t for t in tables.values() if len(t))
    if columns.get("image", "image") in first.columns:
        return "image"
    if columns.get("audio", "audio") in first.columns:
        return "audio"
    return "text"


# ---- row checks


def _kept(table: Table, keep: list[int]) -> Table:
    return table if len(keep) == len(table) else table.take(keep)


def _check_text(table: Table, column: str, role: str, name: str, errors: RowErrors) -> tuple[Table, list[str]]:
    values = table.require(column, role, name)
    keep, texts = [], []
    for i, v in enumerate(values):
        problem = text_problem(v, column, role)
        if problem:
            errors.bad(table.where[i], problem)
        else:
            keep.append(i)
            texts.append(str(v))
    return _kept(table, keep), texts


def _check_labels(table: Table, column: str, name: str, errors: RowErrors) -> Table:
    """The rows with one label (a string or a number); a missing or nested label is a bad row. Run before
    the label names are collected, so that a skipped row adds no class."""
    values = table.require(column, "label", name)
    keep = []
    for i, v in enumerate(values):
        problem = label_problem(v, column)
        if problem:
            errors.bad(table.where[i], problem)
        else:
            keep.append(i)
    return _kept(table, keep)


def _label_names(values: list, given: list[str] | None, name: str, column: str) -> list[str]:
    if given is not None:
        return list(given)
    present = set(values)
    if present and all(isinstance(v, (int, np.integer)) for v in present) and min(present) >= 0:  # class ids
        top = int(max(present))
        if top >= max(1000, 10 * len(present)):  # ids, but not of classes: a model with `top` outputs
            raise SoraError(f"{name}: column '{column}' has integer labels up to {top} but only {len(present)} "
                            "different ones; as class ids they must count from 0; as names, list them in "
                            "data.label_names")
        return [str(i) for i in range(top + 1)]
    names = {str(v).strip() for v in present}
    if all(n.lstrip("-").isdigit() for n in names):  # "2" before "10"
        return sorted(names, key=int)
    return sorted(names)


def _label_ids(table: Table, column: str, names: list[str], name: str, errors: RowErrors) -> tuple[np.ndarray, list[int]]:
    values = table.require(column, "label", name)
    index = {n: i for i, n in enumerate(names)}
    ids, keep = [], []
    for i, v in enumerate(values):
        key = str(v.item() if hasattr(v, "item") else v).strip()
        if key in index:
            ids.append(index[key])
        elif isinstance(v, (int, np.integer)) and 0 <= int(v) < len(names):
            ids.append(int(v))
        else:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            errors.bad(table.where[i], f"unknown label {key!r} in column '{column}' (labels: {shown}); "
                                       "list it in data.label_names")
            continue
        keep.append(i)
    return np.asarray(ids, dtype=np.int64), keep


# ---- splitting


def _split_indices(cfg: DataConfig, raw: Raw, columns: dict[str, str], labels: dict[str, np.ndarray] | None
                   ) -> dict[str, tuple[str, np.ndarray]]:
    """For each split, (table name, row indices). Given splits are used; missing ones carved from train."""
    s = cfg.split
    given = [k for k in raw.tables if k != "all"]
    use_given = given and not ("given" in s.model_fields_set and not s.given)
    if given and not use_given:  # the user asked to re-split a source that comes split
        raise SoraError("data.split.given: false, but this source comes split "
                        f"({', '.join(given)}); remove it or give a single source")
    if use_given:
        out = {k: (k, np.arange(len(raw.tables[k]))) for k in given}
        train_labels = labels.get("train") if labels else None
        seed = s.seed
        for missing, fraction in (("validation", s.validation), ("test", s.test)):
            if missing not in out:
                rest, held = sp.carve(out["train"][1], fraction, seed, train_labels if s.stratify else None)
                out["train"], out[missing] = ("train", rest), ("train", held)
                seed += 1
        return out
    table = raw.tables["all"]
    n = len(table)
    split_col = columns.get("split", "split")
    if s.given:
        if split_col not in table.columns:
            raise SoraError(f"data.split.given: the source has no '{split_col}' column and is not a mapping of "
                            "splits; name the column with data.columns.split")
        values = [str(v).strip().lower() for v in table.columns[split_col]]
        aliases = {"valid": "validation", "val": "validation", "dev": "validation"}
        values = [aliases.get(v, v) for v in values]
        bad = sorted(set(values) - set(SPLITS))
        if bad:
            raise SoraError(f"column '{split_col}': unknown split name(s) {bad} (use train, validation, test)")
        idx = {k: np.flatnonzero(np.asarray(values) == k) for k in SPLITS}
        return {k: ("all", v) for k, v in idx.items()}
    group_col = cfg.column("group") or columns.get("group") or raw.group
    if group_col:
        parts = sp.group_split(table.require(group_col, "group", "data"), s.validation, s.test, s.seed)
    elif labels is not None and s.stratify:
        parts = sp.stratified_split(labels["all"], s.validation, s.test, s.seed)
    else:
        parts = sp.random_split(n, s.validation, s.test, s.seed)
    return {k: ("all", v) for k, v in parts.items()}


def _limited(cfg: DataConfig, idx: np.ndarray, from_given: bool) -> np.ndarray:
    if cfg.limit is None or len(idx) <= cfg.limit:
        return idx
    if from_given:  # given splits are in source order: take a seeded sample, kept in that order
        pick = np.sort(np.random.default_rng(cfg.split.seed).permutation(len(idx))[: cfg.limit])
        return idx[pick]
    return idx[: cfg.limit]  # computed splits are already in a seeded random order


def _select(cfg, raw, columns, labels) -> dict[str, tuple[Table, np.ndarray]]:
    """Each split's rows as (table, indices) after splitting and ``limit``."""
    chosen = _split_indices(cfg, raw, columns, labels)
    out = {}
    for split in SPLITS:
        table_name, idx = chosen.get(split, ("all" if "all" in raw.tables else "train", np.zeros(0, np.int64)))
        out[split] = (raw.tables[table_name], _limited(cfg, idx, table_name != "all"))
    return out


# ---- tokenizers


def _tokenizer(cfg: DataConfig, task: str, given: Tokenizer | None, train_texts, max_len: int) -> Tokenizer:
    if given is not None:
        tok, pretrained = Tokenizer.from_str(given.to_str()), True  # a copy: the caller's stays untouched
    elif cfg.tokenizer.kind == "pretrained":
        tok, pretrained = load_tokenizer_file(cfg.tokenizer.path), True
    else:
        tok, pretrained = train_tokenizer(train_texts, cfg.tokenizer, cfg.normalize), False
    return configure_for_task(tok, task, max_len, pretrained=pretrained)


def _encode(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    return [np.asarray(e.ids, dtype=np.int32) for e in tok.encode_batch(texts)] if texts else []


def _encode_corpus(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Long documents: characters map straight through the vocabulary (same ids, far faster)."""
    vocab = char_vocab(tok)
    if vocab is None:
        return _encode(tok, texts)
    return [encode_chars(tok, vocab, t) for t in texts]


# ---- per task


def _classification(cfg, raw, columns, errors, tokenizer, name) -> Prepared:
    modality = _modality(raw.tables, columns)
    label_col = columns.get("label", "label")
    input_col = columns.get({"text": "text", "image": "image", "audio": "audio"}[modality], modality)
    checked = {}
    for key, table in raw.tables.items():
        if modality == "text":
            table, _ = _check_text(table, input_col, "text", name, errors)
        checked[key] = _check_labels(table, label_col, name, errors)
    all_values = [v for t in checked.values() for v in t.require(label_col, "label", name)]
    names = _label_names(all_values, cfg.label_names or raw.label_names, name, label_col)
    if not names:
        raise SoraError(f"{name}: no labels found in column '{label_col}'{_skipped(errors)}")
    tables, labels = {}, {}
    for key, table in checked.items():
        ids, keep = _label_ids(table, label_col, names, name, errors)
        tables[key] = _kept(table, keep)
        labels[key] = ids
    raw = Raw(tables, raw.columns, names, raw.group)
    chosen = _select(cfg, raw, columns, labels)
    split_labels = {k: labels[_table_key(raw, t)][idx] for k, (t, idx) in chosen.items()}
    info = _unseen_labels(split_labels, names, name)
    if modality == "text":
        texts = {k: [str(t.columns[input_col][i]) for i in idx] for k, (t, idx) in chosen.items()}
        tok = _tokenizer(cfg, "classification", tokenizer, texts["train"], cfg.max_len)
        splits = {k: TextClassification(_encode(tok, texts[k]), split_labels[k], texts[k]) for k in SPLITS}
        return Prepared(cfg, "classification", "text", tok, names, splits, info=info)
    if modality == "image":
        images = {k: _images(t.require(input_col, "image", name), idx, cfg) for k, (t, idx) in chosen.items()}
        mean, std = _channel_stats(images["train"])
        splits = {k: Images(images[k], split_labels[k], mean, std, cfg.augment if k == "train" else None)
                  for k in SPLITS}
        return Prepared(cfg, "classification", "image", None, names, splits, info=info)
    waves = {k: _waves(t, input_col, idx, cfg, name) for k, (t, idx) in chosen.items()}
    stats = _mel_stats(waves["train"], cfg)
    splits = {k: Audio(waves[k], cfg.sample_rate, cfg.n_mels, cfg.n_fft, cfg.hop_length, labels=split_labels[k],
                       augment=cfg.augment if k == "train" else None, stats=stats) for k in SPLITS}
    return Prepared(cfg, "classification", "audio", None, names, splits, info=info)


def _unseen_labels(split_labels: dict[str, np.ndarray], names: list[str], name: str) -> dict[str, Any]:
    """Labels of validation/test examples that no training example has, said in a warning and kept in
    ``info`` (``sora data show --json``): their examples are used, but can never be predicted right."""
    seen = set(split_labels["train"].tolist())
    unseen = {split: [names[i] for i in sorted(set(split_labels[split].tolist()) - seen)]
              for split in ("validation", "test")}
    unseen = {k: v for k, v in unseen.items() if v}
    for split, labels in unseen.items():
        shown = ", ".join(map(repr, labels[:8])) + (", ..." if len(labels) > 8 else "")
        warnings.warn(f"{name}: the {split} split has label(s) {shown} that no training example has",
                      UnseenLabelsWarning, stacklevel=4)
    return {"unseen_labels": unseen} if unseen else {}


def _table_key(raw: Raw, table: Table) -> str:
    return next(k for k, t in raw.tables.items() if t is table)


def _images(images: np.ndarray, idx: np.ndarray, cfg: DataConfig) -> np.ndarray:
    out = np.asarray(images)[idx]
    if out.ndim == 3:
        out = out[..., None]
    if cfg.image_size and out.shape[1] != cfg.image_size:
        from PIL import Image

        resized = [np.asarray(Image.fromarray(x.squeeze(-1) if x.shape[-1] == 1 else x).resize(
            (cfg.image_size, cfg.image_size), Image.BILINEAR)) for x in out]
        out = np.stack(resized)
        out = out[..., None] if out.ndim == 3 else out
    return out


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = images.reshape(-1, images.shape[-1]).astype(np.float64)
    return x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)


def _waves(table: Table, column: str, idx: np.ndarray, cfg: DataConfig, name: str) -> list[np.ndarray]:
    from sora.data.audio import resample

    values = table.require(column, "audio", name)
    rate = table.info.get("sample_rate", cfg.sample_rate)
    cap = int(cfg.max_seconds * cfg.sample_rate)
    return [resample(np.asarray(values[i], dtype=np.float32), rate, cfg.sample_rate)[:cap] for i in idx]


def _mel_stats(waves: list[np.ndarray], cfg: DataConfig) -> tuple[float, float]:
    """Mean and std of log-mel energies over (up to) 256 training clips: features near N(0, 1)."""
    import torch

    from sora.data.audio import log_mel

    if not waves:
        return 0.0, 1.0
    values = [log_mel(torch.from_numpy(w)[None], cfg.sample_rate, cfg.n_mels, cfg.n_fft, cfg.hop_length).flatten()
              for w in waves[:256]]
    allv = torch.cat(values)
    return float(allv.mean()), float(allv.std().clamp_min(1e-6))


def _lm(cfg, raw, columns, errors, tokenizer, name) -> Prepared:
    text_col = columns.get("text", "text")
    docs = []
    for key in ("train", "validation", "test", "all"):
        if key in raw.tables:  # given splits are concatenated in order, then cut by fractions
            _, texts = _check_text(raw.tables[key], text_col, "text", name, errors)
            docs.extend(texts)
    parts = _cut_documents(docs, cfg.split.validation, cfg.split.test)
    tok = _tokenizer(cfg, "lm", tokenizer, parts["train"], cfg.max_len)
    eos = special_id(tok, EOS)
    splits = {}
    for split in SPLITS:
        joined = []
        for piece in _encode_corpus(tok, parts[split]):  # documents joined by [EOS] when the tokenizer has one
            if joined and eos is not None:
                joined.append(np.asarray([eos], np.int32))
            joined.append(piece)
        stream = np.concatenate(joined) if joined else np.zeros(0, np.int32)
        if cfg.limit is not None:
            stream = stream[: cfg.limit * cfg.block_size + 1]
        splits[split] = LMBlocks(stream, cfg.block_size)
    info = {"tokens": {k: int(len(v.stream)) for k, v in splits.items()}}
    return Prepared(cfg, "lm", "text", tok, None, splits, info=info)


def _cut_documents(docs: list[str], validation: float, test: float) -> dict[str, list[str]]:
    """Cut the concatenated documents at character fractions: train first, then validation, then test."""
    total = sum(len(d) for d in docs)
    bounds = [0, int(total * (1 - validation - test)), int(total * (1 - test)), total]
    out: dict[str, list[str]] = {k: [] for k in SPLITS}
    start = 0
    for doc in docs:
        end = start + len(doc)
        for k, split in enumerate(SPLITS):
            lo, hi = max(start, bounds[k]), min(end, bounds[k + 1])
            if hi > lo:
                out[split].append(doc[lo - start : hi - start])
        start = end
    return out


def _seq2seq(cfg, raw, columns, errors, tokenizer, name) -> Prepared:
    src_col, tgt_col = columns.get("source", "source"), columns.get("target", "target")
    tables = {}
    for key, table in raw.tables.items():
        table, _ = _check_text(table, src_col, "source", name, errors)
        table, _ = _check_text(table, tgt_col, "target", name, errors)
        tables[key] = table
    raw = Raw(tables, raw.columns, None, raw.group)
    chosen = _select(cfg, raw, columns, None)
    src = {k: [str(t.columns[src_col][i]) for i in idx] for k, (t, idx) in chosen.items()}
    tgt = {k: [str(t.columns[tgt_col][i]) for i in idx] for k, (t, idx) in chosen.items()}
    tok = _tokenizer(cfg, "seq2seq", tokenizer, src["train"] + tgt["train"], cfg.max_source_len)
    bos = special_id(tok, BOS)
    if bos is None:
        raise SoraError("seq2seq needs a beginning-of-sequence token ([BOS] or <s>) in the tokenizer")
    splits = {}
    for k in SPLITS:
        s_ids = _encode(tok, src[k])
        tok.enable_truncation(cfg.max_target_len)
        t_ids = _encode(tok, tgt[k])
        tok.enable_truncation(cfg.max_source_len)  # what a saved tokenizer applies to new sources
        splits[k] = Seq2SeqPairs(s_ids, t_ids, bos, list(zip(src[k], tgt[k])))
    return Prepared(cfg, "seq2seq", "text", tok, None, splits)


def _ctc(cfg, raw, columns, errors, tokenizer, name) -> Prepared:
    """Transcribed audio. Symbols are the words of ``label_names`` when given, else characters;
    class 0 is the CTC blank, so targets (padded with 0) use ids from 1."""
    audio_col, text_col = columns.get("audio", "audio"), columns.get("text", "text")
    tables = {}
    for key, table in raw.tables.items():
        table, _ = _check_text(table, text_col, "text", name, errors)
        tables[key] = table
    symbols = cfg.label_names or raw.label_names
    words = symbols is not None
    if symbols is None:
        symbols = sorted({c for t in tables.values() for s in t.columns[text_col] for c in str(s)})
    index = {s: i + 1 for i, s in enumerate(symbols)}
    targets: dict[str, list] = {}
    for key, table in tables.items():
        keep, seqs = [], []
        for i, text in enumerate(table.columns[text_col]):
            units = str(text).split() if words else list(str(text))
            unknown = [u for u in units if u not in index]
            if unknown or not units:
                errors.bad(table.where[i], f"transcript {text!r}: " + (f"unknown symbol {unknown[0]!r}; list it "
                                                                      "in data.label_names" if unknown else "empty"))
                continue
            keep.append(i)
            seqs.append(np.asarray([index[u] for u in units], dtype=np.int64))
        tables[key] = table if len(keep) == len(table) else table.take(keep)
        targets[key] = seqs
    raw = Raw(tables, raw.columns, None, raw.group)
    chosen = _select(cfg, raw, columns, None)
    splits = {}
    waves = {k: _waves(t, audio_col, idx, cfg, name) for k, (t, idx) in chosen.items()}
    stats = _mel_stats(waves["train"], cfg)
    for k, (t, idx) in chosen.items():
        seqs = targets[_table_key(raw, t)]
        texts = [str(t.columns[text_col][i]) for i in idx]
        splits[k] = Audio(waves[k], cfg.sample_rate, cfg.n_mels, cfg.n_fft, cfg.hop_length,
                          targets=[seqs[i] for i in idx], augment=cfg.augment if k == "train" else None,
                          stats=stats, texts=texts)
    return Prepared(cfg, "ctc", "audio", None, [BLANK] + list(symbols), splits)
