"""Vocabulary pruning: drop the token rows a model's domain never uses.

A pretrained BERT-family model carries a ~30k-token WordPiece table built for all of English (and
more); fine-tuned for one task it meets a fraction of it, yet the table is often the largest
single tensor (half of all-MiniLM-L6-v2's weights). This keeps the tokens the given texts use,
the special tokens, and every single character seen plus printable ASCII (as a word start and as
a ``##`` continuation), slices the embedding rows (and a language-model head's) and rebuilds the
tokenizer with the kept vocabulary, renumbered in the old order.

Why it is safe: WordPiece picks the longest vocabulary match, so text made of kept tokens
tokenizes to the same pieces as before (checked on every given text, or this raises); a word
whose pieces were dropped falls back to shorter pieces, down to characters, as WordPiece already
does for any rare word. The pruned model's outputs on the given texts equal the original's.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field

import torch
from tokenizers import Tokenizer
from torch import nn

from sora.errors import SoraError
from sora.models import build_model
from sora.particles import LMHead, TokenEmbedding

SPECIAL_ID_FIELDS = ("pad_id", "bos_id", "eos_id")


@dataclass
class VocabularyPruning:
    model: nn.Module
    tokenizer: Tokenizer
    kept: list[int]  # old ids, ascending: new id i was old id kept[i]
    report: dict = field(default_factory=dict)

    def rebuild(self, tokenizer: Tokenizer) -> Tokenizer:
        """Another copy of the same vocabulary (e.g. the model folder's), pruned the same way."""
        return rebuild_tokenizer(tokenizer, self.kept)


def prune_vocabulary(model: nn.Module, tokenizer: Tokenizer, texts: list[str]) -> VocabularyPruning:
    """A copy of ``model`` and ``tokenizer`` that keep only what ``texts`` need (see the module doc)."""
    _check_wordpiece(tokenizer)
    config = model.config
    if config.quantization:
        raise SoraError("cannot prune the vocabulary of a quantized model: prune the fp32 model, then quantize")
    if not texts:
        raise SoraError("vocabulary pruning needs texts (the training split) to know which tokens are used")
    vocab = tokenizer.get_vocab()
    if len(vocab) != config.vocab_size:
        raise SoraError(f"the tokenizer has {len(vocab):,} tokens but the model's vocab_size is {config.vocab_size:,}")
    old = tokenizer.encode_batch(texts)
    used = {i for e in old for i in e.ids}
    chars = {c for t in texts for c in t} | set(string.printable.strip())
    normalized = {tokenizer.normalizer.normalize_str(c) if tokenizer.normalizer else c for c in chars}
    singles = {vocab[p] for c in normalized for p in (c, "##" + c) if p in vocab}
    special = set(tokenizer.get_added_tokens_decoder())
    special |= {getattr(config, f) for f in SPECIAL_ID_FIELDS if getattr(config, f) is not None}
    kept = sorted(used | singles | special)

    new_tokenizer = rebuild_tokenizer(tokenizer, kept)
    new_id = {o: n for n, o in enumerate(kept)}
    for text, before, after in zip(texts, old, new_tokenizer.encode_batch(texts)):
        if [new_id[i] for i in before.ids] != after.ids:  # a tokenizer feature this rebuild does not cover
            raise SoraError(f"the rebuilt tokenizer splits {text[:60]!r} differently; vocabulary not pruned")
    pruned = _sliced_model(model, kept)
    return VocabularyPruning(
        pruned,
        new_tokenizer,
        kept,
        {
            "vocabulary_before": len(vocab),
            "vocabulary_after": len(kept),
            "used_by_texts": len(used),
            "characters": len(singles - used),
            "texts": len(texts),
        },
    )


def rebuild_tokenizer(tokenizer: Tokenizer, kept: list[int]) -> Tokenizer:
    """``tokenizer`` with only the ``kept`` ids, renumbered 0..n-1 in their old order."""
    _check_wordpiece(tokenizer)
    new_id = {o: n for n, o in enumerate(kept)}
    spec = json.loads(tokenizer.to_str())
    spec["model"]["vocab"] = {t: new_id[i] for t, i in spec["model"]["vocab"].items() if i in new_id}
    for token in spec.get("added_tokens") or []:
        token["id"] = _renumber(new_id, token["id"], token["content"])
    _renumber_processor(spec.get("post_processor"), new_id)
    if spec.get("padding"):
        spec["padding"]["pad_id"] = _renumber(new_id, spec["padding"]["pad_id"], spec["padding"].get("pad_token"))
    return Tokenizer.from_str(json.dumps(spec))


def _check_wordpiece(tokenizer: Tokenizer) -> None:
    kind = json.loads(tokenizer.to_str())["model"]["type"]
    if kind != "WordPiece":
        raise SoraError(
            f"vocabulary pruning needs a WordPiece tokenizer (BERT family); this one is {kind}, "
            "whose merges or scores would have to be pruned too"
        )


def _renumber(new_id: dict[int, int], old: int, what) -> int:
    if old not in new_id:
        raise SoraError(f"special token {what!r} (id {old}) would be pruned; it must be kept")
    return new_id[old]


def _renumber_processor(processor: dict | None, new_id: dict[int, int]) -> None:
    """Special-token ids inside a post-processor: Template, Bert/Roberta, or a Sequence of them."""
    if not processor:
        return
    kind = processor.get("type")
    if kind == "Sequence":
        for p in processor["processors"]:
            _renumber_processor(p, new_id)
    elif kind == "TemplateProcessing":
        for name, token in processor["special_tokens"].items():
            token["ids"] = [_renumber(new_id, i, name) for i in token["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token, old = processor[key]
            processor[key] = [token, _renumber(new_id, old, token)]
    elif kind != "ByteLevel":
        raise SoraError(f"vocabulary pruning does not know the {kind} post-processor")


def _sliced_model(model: nn.Module, kept: list[int]) -> nn.Module:
    """The model rebuilt with ``len(kept)`` tokens: embedding and LM-head rows sliced, special ids renumbered."""
    index = torch.tensor(kept, dtype=torch.long)
    new_id = {o: n for n, o in enumerate(kept)}
    rows = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, TokenEmbedding)}
    rows |= {
        f"{name}.proj.{p}" for name, m in model.named_modules() if isinstance(m, LMHead) for p in ("weight", "bias")
    }
    state = {
        k: (v.detach().index_select(0, index).clone() if k in rows else v.detach().clone())
        for k, v in model.state_dict().items()
    }
    changes = {"vocab_size": len(kept)}
    changes |= {f: new_id[getattr(model.config, f)] for f in SPECIAL_ID_FIELDS if getattr(model.config, f) is not None}
    pruned = build_model(model.config.model_copy(update=changes))
    pruned.load_state_dict(state, strict=True)
    return pruned.train(model.training)
