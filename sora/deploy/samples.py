"""The inputs an export is checked on: a few batches of the model's own data, else generated ones.

A model folder written by training names its data (``meta.json`` ``provenance.data_config``); its
validation split (else test, else train) gives real inputs of different lengths, padded as in
training. A folder that names no data, or whose data cannot be read here, is checked on inputs
generated from its config instead, and the export says so. A model with segment embeddings (text pairs:
a pair classifier, a question-answering model) is checked on two-segment inputs either way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import islice

import torch
from torch import Tensor, nn

from sora.data import DataConfig, prepare_data
from sora.errors import first_line

N_BATCHES, BATCH_SIZE = 4, 8
LIMIT = 64  # examples read per split: enough for the batches, and quick on any dataset
STEPS = 3  # cached decoder steps checked after the prompt's step
LM_LENGTHS = (4, 7, 11, 16)  # prompt lengths of the decoder batches (capped by the model's max_len)
TASKS = {
    "encoder_classifier": "classification",
    "token_classifier": "ctc",
    "decoder_lm": "lm",
    "seq2seq": "seq2seq",
    "span_extractor": "span",
}


@dataclass
class Samples:
    """Batches at the model's level: ``inputs``/``valid`` (encoders; ``segments`` for text pairs), ``ids`` (LM),
    ``src``/``src_valid``/``tgt`` (seq2seq). ``source`` is what meta.json records; ``note`` why generated inputs
    were used."""

    source: str
    batches: list[dict[str, Tensor]]
    note: str = ""


def parity_samples(model: nn.Module, meta: dict, tokenizer) -> Samples:
    """Real batches from the data ``meta`` names, else generated ones (``note`` says why)."""
    real, why = _from_data(model, meta, tokenizer)
    if real is not None:
        return real
    return Samples("generated", generated_batches(model.config), why)


def _from_data(model: nn.Module, meta: dict, tokenizer) -> tuple[Samples | None, str]:
    section = (meta.get("provenance") or {}).get("data_config")
    if not isinstance(section, dict):
        return None, "the folder names no data (meta.json has no provenance.data_config)"
    config = model.config
    try:
        cfg = DataConfig.model_validate(section)
        cfg = cfg.model_copy(update={"limit": min(cfg.limit or LIMIT, LIMIT)})
        with warnings.catch_warnings():  # skipped rows and the like: the training run reported them
            warnings.simplefilter("ignore")
            data = prepare_data(cfg, tokenizer=tokenizer)
    except Exception as e:  # noqa: BLE001  any reason the data is unreadable here means generated inputs
        return None, f"its data could not be read here ({first_line(e)})"
    if data.task != TASKS.get(config.arch) or data.modality != config.input:
        return None, f"its data ({data.task}, {data.modality}) is not this model's input"
    split = next((s for s in ("validation", "test", "train") if data.has_split(s)), None)
    if split is None:
        return None, "its data has no examples"
    loader = data.loader(split, BATCH_SIZE, shuffle=True, seed=0, bucket=False)  # mixed lengths in a batch
    batches = [_model_batch(config, b, i) for i, b in enumerate(islice(loader, N_BATCHES))]
    n = sum(len(next(iter(b.values()))) for b in batches)
    return Samples(f"{split} ({n} examples)", batches), ""


def _model_batch(config, batch: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    """A data batch (sora.data.datasets) as the graphs' inputs; LM and target prefixes of different lengths."""
    if config.arch == "decoder_lm":
        return {"ids": batch["inputs"][:, : _lm_length(config, i)]}
    if config.arch == "seq2seq":
        tgt = batch["tgt_in"][:, : min(i + 1, batch["tgt_in"].shape[1], config.max_len - STEPS)]
        return {
            "src": batch["src"][:, : config.max_len],
            "src_valid": batch["src_valid"][:, : config.max_len],
            "tgt": tgt,
        }
    out = {"inputs": batch["inputs"]}
    if "valid" in batch and config.input != "image":
        out["valid"] = batch["valid"]
    if config.segments:  # a pair's batch has its segments; single texts read as segment 0
        out["segments"] = batch.get("segments", torch.zeros_like(batch["inputs"]))
    return out


def _lm_length(config, i: int) -> int:
    return max(1, min(LM_LENGTHS[i % len(LM_LENGTHS)], config.max_len - STEPS))


def generated_batches(config, seed: int = 0) -> list[dict[str, Tensor]]:
    """Random inputs the model accepts: ids in its vocabulary, padded to mixed lengths; images; mels."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(N_BATCHES):
        if config.arch == "decoder_lm":
            batches.append(
                {"ids": torch.randint(0, config.vocab_size, (BATCH_SIZE, _lm_length(config, i)), generator=g)}
            )
        elif config.arch == "seq2seq":
            src, src_valid = _padded_ids(config, g)
            tgt = torch.randint(0, config.vocab_size, (BATCH_SIZE, min(i + 1, config.max_len - STEPS)), generator=g)
            tgt[:, 0] = config.bos_id if config.bos_id is not None else tgt[:, 0]
            batches.append({"src": src, "src_valid": src_valid, "tgt": tgt})
        elif config.input == "image":
            im = config.image
            batches.append({"inputs": torch.randn(BATCH_SIZE, im.channels, im.size, im.size, generator=g)})
        elif config.input == "audio":
            batches.append(_mels(config, g))
        else:
            ids, valid = _padded_ids(config, g)
            pairs = {"segments": pair_segments(valid)} if config.segments else {}
            batches.append({"inputs": ids, "valid": valid, **pairs})
    return batches


def _lengths(longest: int, shortest: int, g: torch.Generator) -> Tensor:
    """BATCH_SIZE lengths in [shortest, longest], the first one the longest (the batch is padded to it)."""
    lengths = torch.randint(shortest, longest + 1, (BATCH_SIZE,), generator=g)
    lengths[0] = longest
    return lengths


def _padded_ids(config, g: torch.Generator) -> tuple[Tensor, Tensor]:
    T = min(config.max_len, 24)
    valid = torch.arange(T)[None, :] < _lengths(T, min(2, T), g)[:, None]  # (B, T)
    ids = torch.randint(0, config.vocab_size, (BATCH_SIZE, T), generator=g)
    return ids.masked_fill(~valid, config.pad_id), valid


def pair_segments(valid: Tensor) -> Tensor:
    """(B, T) segment ids of text pairs: each row's first half of real tokens 0, the second half 1, padding 0."""
    lengths = valid.sum(1, keepdim=True)  # (B, 1)
    return ((torch.arange(valid.shape[1])[None, :] >= lengths // 2) & valid).long()


def _mels(config, g: torch.Generator) -> dict[str, Tensor]:
    p = config.audio.patch_frames
    cls = config.arch == "encoder_classifier" and config.pooling == "cls"
    F = min(config.max_len - cls, 12) * p
    valid = torch.arange(F)[None, :] < _lengths(F, p, g)[:, None]  # (B, F)
    mels = torch.randn(BATCH_SIZE, config.audio.n_mels, F, generator=g)
    return {"inputs": mels.masked_fill(~valid[:, None, :], 0.0), "valid": valid}
