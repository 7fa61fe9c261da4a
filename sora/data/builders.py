"""One builder per task: from a source's checked rows to a ``Prepared`` dataset.

Each takes a ``Source`` (the config, the raw tables, column names, the bad-row policy, a tokenizer to
reuse) and returns the task's splits: text, image or audio classification; language modelling
(documents joined into one token stream, cut into blocks); seq2seq pairs; CTC transcripts of audio.
The tokenizer is trained on the training split only, and image and audio statistics are the
training split's.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer

from sora.data.audio import log_mel, resample
from sora.data.build_span import build_span
from sora.data.builtin import Raw
from sora.data.config import DataConfig
from sora.data.datasets import Audio, Examples, Images, LMBlocks, Seq2SeqPairs, TextClassification
from sora.data.duplicates import input_keys
from sora.data.encoding import encode, encode_corpus, tokenizer_for
from sora.data.pairs import encode_pairs
from sora.data.prepared import Prepared
from sora.data.rows import check_labels, check_texts, kept, label_ids, label_names, skipped_note
from sora.data.source import Source, handle_repeats, overlap
from sora.data.splits import SPLITS, Selection, cut_documents, select_rows
from sora.data.table import RowErrors, Table
from sora.data.tokenizer import BOS, EOS, special_id
from sora.errors import SoraError, SoraWarning

BLANK = "<blank>"  # CTC's class 0


class UnseenLabelsWarning(SoraWarning):
    """A validation or test split has labels that no training example has: the model cannot learn them."""


# -- classification --------------------------------------------------------------------------------------


def build_classification(src: Source) -> Prepared:
    """Text, image or audio classification, by the columns the source has."""
    modality = _modality(src.raw.tables, src.columns)
    column = src.columns.get(modality, modality)
    names, labels, raw = _labelled(src, modality, column)
    keys = {k: _input_keys(src, t, modality, column) for k, t in raw.tables.items()}
    raw, keys, same, info = handle_repeats(src, raw, keys, labels, names)
    chosen = select_rows(src.cfg, raw, src.columns, labels, same)
    split_labels = {k: labels[s.source][s.rows] for k, s in chosen.items()}
    info.update(_unseen_labels(split_labels, names, src.name, chosen))
    info["overlap"] = overlap(src, chosen, keys)
    make = {"text": _text_splits, "image": _image_splits, "audio": _audio_splits}[modality]
    tokenizer, splits = make(src, chosen, split_labels, column)
    return Prepared(src.cfg, "classification", modality, tokenizer, names, _with_columns(splits, chosen), info=info)


def _input_keys(src: Source, table: Table, modality: str, column: str) -> list:
    """One key per row, equal when the inputs are: a text pair is the same input only when both texts are."""
    keys = input_keys(table.require(column, modality, src.name), modality, src.cfg.normalize.strip)
    pair = src.columns.get("text_pair") if modality == "text" else None
    if pair is None:
        return keys
    seconds = input_keys(table.require(pair, "text_pair", src.name), modality, src.cfg.normalize.strip)
    return [f"{a}\n\n{b}" for a, b in zip(keys, seconds)]


def _with_columns(splits: dict[str, Examples], chosen: dict[str, Selection]) -> dict[str, Examples]:
    """Each split keeps the source's columns of single values (accent, snr, ...), row by row: metrics can
    then be grouped by them. Inputs (audio, images) are not single values and stay out."""
    for key, selection in chosen.items():
        splits[key].columns = {
            name: [values[i] for i in selection.rows]
            for name, values in selection.table.columns.items()
            if len(values) and np.ndim(values[0]) == 0 and not isinstance(values[0], bytes)
        }
    return splits


def _modality(tables: dict[str, Table], columns: dict[str, str]) -> str:
    first = next(t for t in tables.values() if len(t))
    if columns.get("image", "image") in first.columns:
        return "image"
    if columns.get("audio", "audio") in first.columns:
        return "audio"
    return "text"


def _labelled(src: Source, modality: str, column: str) -> tuple[list[str], dict[str, np.ndarray], Raw]:
    """The class names, each table's label ids, and the tables with only the rows that have a good input
    (text) and a known label."""
    label_col = src.columns.get("label", "label")
    checked = {}
    for key, table in src.raw.tables.items():
        if modality == "text":
            table, _ = check_texts(table, column, "text", src.name, src.errors)
        checked[key] = check_labels(table, label_col, src.name, src.errors)
    values = [v for t in checked.values() for v in t.require(label_col, "label", src.name)]
    names = label_names(values, src.cfg.label_names or src.raw.label_names, src.name, label_col)
    if not names:
        raise SoraError(f"{src.name}: no labels found in column '{label_col}'{skipped_note(src.errors)}")
    tables, labels = {}, {}
    for key, table in checked.items():
        ids, keep = label_ids(table, label_col, names, src.name, src.errors)
        tables[key] = kept(table, keep)
        labels[key] = ids
    return names, labels, Raw(tables, src.raw.columns, names, src.raw.group)


def _unseen_labels(
    split_labels: dict[str, np.ndarray], names: list[str], name: str, chosen: dict[str, Selection]
) -> dict[str, Any]:
    """Labels of validation/test examples that no training example has, each with the first row that has it,
    said in a warning and kept in ``info`` (``sora data show --json``): their examples are used, but can never
    be predicted right."""
    seen = set(split_labels["train"].tolist())
    unseen: dict[str, list[str]] = {}
    for split in ("validation", "test"):
        ids = split_labels[split].tolist()
        firsts = {i: n for n, i in reversed(list(enumerate(ids))) if i not in seen}  # label id -> its first row
        if not firsts:
            continue
        unseen[split] = [names[i] for i in sorted(firsts)]
        sel = chosen[split]
        rows = ", ".join(f"{names[i]!r} at {sel.table.where[sel.rows[firsts[i]]]}" for i in sorted(firsts)[:8])
        shown = ", ".join(map(repr, unseen[split][:8])) + (", ..." if len(firsts) > 8 else "")
        warnings.warn(
            f"{name}: the {split} split has label(s) {shown} that no training example has (first rows: {rows}); "
            "the model cannot learn them",
            UnseenLabelsWarning,
            stacklevel=4,
        )  # the caller of prepare_data
    return {"unseen_labels": unseen} if unseen else {}


Splits = tuple[Tokenizer | None, dict[str, Examples]]


def _text_splits(src: Source, chosen: dict[str, Selection], labels: dict[str, np.ndarray], column: str) -> Splits:
    texts = {k: [str(s.table.columns[column][i]) for i in s.rows] for k, s in chosen.items()}
    pair = src.columns.get("text_pair")
    if pair is None:
        tok = tokenizer_for(src.cfg, "classification", src.tokenizer, texts["train"], src.cfg.max_len)
        return tok, {k: TextClassification(encode(tok, texts[k]), labels[k], texts[k]) for k in SPLITS}
    seconds = {k: _column_texts(s, pair, "text_pair", src.name) for k, s in chosen.items()}
    tok = tokenizer_for(src.cfg, "classification", src.tokenizer, texts["train"] + seconds["train"], src.cfg.max_len)
    splits = {}
    for k in SPLITS:
        ids, segments = encode_pairs(tok, texts[k], seconds[k])
        splits[k] = TextClassification(ids, labels[k], texts[k], segments)
    return tok, splits


def _column_texts(selection: Selection, column: str, role: str, name: str) -> list[str]:
    values = selection.table.require(column, role, name)
    return [str(values[i]) for i in selection.rows]


def _image_splits(src: Source, chosen: dict[str, Selection], labels: dict[str, np.ndarray], column: str) -> Splits:
    cfg = src.cfg
    images = {k: _images(s.table.require(column, "image", src.name), s.rows, cfg) for k, s in chosen.items()}
    mean, std = _channel_stats(images["train"])
    return None, {k: Images(images[k], labels[k], mean, std, cfg.augment if k == "train" else None) for k in SPLITS}


def _audio_splits(src: Source, chosen: dict[str, Selection], labels: dict[str, np.ndarray], column: str) -> Splits:
    cfg = src.cfg
    waves = {k: _waves(s.table, column, s.rows, cfg, src.name) for k, s in chosen.items()}
    stats = _mel_stats(waves["train"], cfg)
    return None, {
        k: Audio(
            waves[k],
            cfg.sample_rate,
            cfg.n_mels,
            cfg.n_fft,
            cfg.hop_length,
            labels=labels[k],
            augment=cfg.augment if k == "train" else None,
            stats=stats,
        )
        for k in SPLITS
    }


# -- images and audio ------------------------------------------------------------------------------------


def _images(images: np.ndarray, idx: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """The images at ``idx`` as (N, H, W, C), resized to data.image_size when set."""
    out = np.asarray(images)[idx]
    if out.ndim == 3:
        out = out[..., None]
    if cfg.image_size and out.shape[1] != cfg.image_size:
        resized = [
            np.asarray(
                Image.fromarray(x.squeeze(-1) if x.shape[-1] == 1 else x).resize(
                    (cfg.image_size, cfg.image_size), Image.BILINEAR
                )
            )
            for x in out
        ]
        out = np.stack(resized)
        out = out[..., None] if out.ndim == 3 else out
    return out


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = images.reshape(-1, images.shape[-1]).astype(np.float64)
    return x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)


def _waves(table: Table, column: str, idx: np.ndarray, cfg: DataConfig, name: str) -> list[np.ndarray]:
    """The clips at ``idx``, resampled to data.sample_rate and cut at data.max_seconds."""
    values = table.require(column, "audio", name)
    rate = table.info.get("sample_rate", cfg.sample_rate)
    cap = int(cfg.max_seconds * cfg.sample_rate)
    return [resample(np.asarray(values[i], dtype=np.float32), rate, cfg.sample_rate)[:cap] for i in idx]


def _mel_stats(waves: list[np.ndarray], cfg: DataConfig) -> tuple[float, float]:
    """Mean and std of log-mel energies over (up to) 256 training clips: features near N(0, 1)."""
    if not waves:
        return 0.0, 1.0
    values = [
        log_mel(torch.from_numpy(w)[None], cfg.sample_rate, cfg.n_mels, cfg.n_fft, cfg.hop_length).flatten()
        for w in waves[:256]
    ]
    allv = torch.cat(values)
    return float(allv.mean()), float(allv.std().clamp_min(1e-6))


# -- language modelling ------------------------------------------------------------------------------------


def build_lm(src: Source) -> Prepared:
    """Documents cut by characters into train, validation and test, each one stream of token blocks."""
    cfg = src.cfg
    docs = []
    for key in ("train", "validation", "test", "all"):
        if key in src.raw.tables:  # given splits are concatenated in order, then cut by fractions
            table = src.raw.tables[key]
            _, texts = check_texts(table, src.columns.get("text", "text"), "text", src.name, src.errors, empty_ok=True)
            docs.extend(texts)
    parts = cut_documents(docs, cfg.split.validation, cfg.split.test)
    tok = tokenizer_for(cfg, "lm", src.tokenizer, parts["train"], cfg.max_len)
    eos = special_id(tok, EOS)
    splits = {
        split: LMBlocks(_token_stream(tok, parts[split], eos, cfg.limit, cfg.block_size), cfg.block_size)
        for split in SPLITS
    }
    info = {"tokens": {k: int(len(v.stream)) for k, v in splits.items()}}
    return Prepared(cfg, "lm", "text", tok, None, splits, info=info)


def _token_stream(tok: Tokenizer, texts: list[str], eos: int | None, limit: int | None, block: int) -> np.ndarray:
    """The documents' tokens joined by [EOS] (when the tokenizer has one), enough for ``limit`` blocks."""
    joined = []
    for piece in encode_corpus(tok, texts):
        if joined and eos is not None:
            joined.append(np.asarray([eos], np.int32))
        joined.append(piece)
    stream = np.concatenate(joined) if joined else np.zeros(0, np.int32)
    return stream[: limit * block + 1] if limit is not None else stream


# -- seq2seq ---------------------------------------------------------------------------------------------


def build_seq2seq(src: Source) -> Prepared:
    """Source/target text pairs; one tokenizer for both, truncated to each side's length."""
    cfg = src.cfg
    src_col, tgt_col = src.columns.get("source", "source"), src.columns.get("target", "target")
    tables = {}
    for key, table in src.raw.tables.items():
        table, _ = check_texts(table, src_col, "source", src.name, src.errors)
        table, _ = check_texts(table, tgt_col, "target", src.name, src.errors)
        tables[key] = table
    keys = {k: input_keys(t.columns[src_col], "text", cfg.normalize.strip) for k, t in tables.items()}
    raw, keys, same, info = handle_repeats(src, Raw(tables, src.raw.columns, None, src.raw.group), keys)
    chosen = select_rows(cfg, raw, src.columns, None, same)
    info["overlap"] = overlap(src, chosen, keys)
    sources = {k: [str(s.table.columns[src_col][i]) for i in s.rows] for k, s in chosen.items()}
    targets = {k: [str(s.table.columns[tgt_col][i]) for i in s.rows] for k, s in chosen.items()}
    tok = tokenizer_for(cfg, "seq2seq", src.tokenizer, sources["train"] + targets["train"], cfg.max_source_len)
    bos = special_id(tok, BOS)
    if bos is None:
        raise SoraError("seq2seq needs a beginning-of-sequence token ([BOS] or <s>) in the tokenizer")
    splits = {}
    for k in SPLITS:
        s_ids = encode(tok, sources[k])
        tok.enable_truncation(cfg.max_target_len)
        t_ids = encode(tok, targets[k])
        tok.enable_truncation(cfg.max_source_len)  # what a saved tokenizer applies to new sources
        splits[k] = Seq2SeqPairs(s_ids, t_ids, bos, list(zip(sources[k], targets[k])))
    return Prepared(cfg, "seq2seq", "text", tok, None, splits, info=info)


# -- CTC -----------------------------------------------------------------------------------------------


def build_ctc(src: Source) -> Prepared:
    """Transcribed audio. Symbols are the words of ``label_names`` when given, else characters;
    class 0 is the CTC blank, so targets (padded with 0) use ids from 1."""
    cfg = src.cfg
    audio_col, text_col = src.columns.get("audio", "audio"), src.columns.get("text", "text")
    tables = {
        key: check_texts(table, text_col, "text", src.name, src.errors)[0] for key, table in src.raw.tables.items()
    }
    symbols = cfg.label_names or src.raw.label_names
    words = symbols is not None
    if symbols is None:
        symbols = sorted({c for t in tables.values() for s in t.columns[text_col] for c in str(s)})
    index = {s: i + 1 for i, s in enumerate(symbols)}
    targets: dict[str, list[np.ndarray]] = {}
    for key, table in tables.items():
        tables[key], targets[key] = _transcripts(table, text_col, index, words, src.errors)
    keys = {k: input_keys(t.require(audio_col, "audio", src.name), "audio") for k, t in tables.items()}
    raw, keys, same, info = handle_repeats(
        src, Raw(tables, src.raw.columns, None, src.raw.group), keys, targets=targets
    )
    chosen = select_rows(cfg, raw, src.columns, None, same)
    info["overlap"] = overlap(src, chosen, keys)
    waves = {k: _waves(s.table, audio_col, s.rows, cfg, src.name) for k, s in chosen.items()}
    stats = _mel_stats(waves["train"], cfg)
    splits = {
        k: Audio(
            waves[k],
            cfg.sample_rate,
            cfg.n_mels,
            cfg.n_fft,
            cfg.hop_length,
            targets=[targets[s.source][i] for i in s.rows],
            augment=cfg.augment if k == "train" else None,
            stats=stats,
            texts=[str(s.table.columns[text_col][i]) for i in s.rows],
        )
        for k, s in chosen.items()
    }
    return Prepared(cfg, "ctc", "audio", None, [BLANK] + list(symbols), _with_columns(splits, chosen), info=info)


def _transcripts(
    table: Table, column: str, index: dict[str, int], words: bool, errors: RowErrors
) -> tuple[Table, list[np.ndarray]]:
    """The rows whose transcript is non-empty and uses only known symbols, and their target ids."""
    keep, seqs = [], []
    for i, text in enumerate(table.columns[column]):
        units = str(text).split() if words else list(str(text))
        unknown = [u for u in units if u not in index]
        if unknown or not units:
            errors.bad(
                table.where[i],
                f"transcript {text!r}: "
                + (f"unknown symbol {unknown[0]!r}; list it in data.label_names" if unknown else "empty"),
            )
            continue
        keep.append(i)
        seqs.append(np.asarray([index[u] for u in units], dtype=np.int64))
    return kept(table, keep), seqs


#: data.task -> its builder
BUILDERS: dict[str, Callable[[Source], Prepared]] = {
    "classification": build_classification,
    "lm": build_lm,
    "seq2seq": build_seq2seq,
    "ctc": build_ctc,
    "span": build_span,
}
