"""Texts to token ids: the tokenizer a dataset is encoded with, and the encoding itself.

``tokenizer_for`` gives the tokenizer of a prepared dataset: a copy of one passed in (a resumed run's,
a saved model's), a pretrained file, or one trained on the training split only; ``encode`` turns
texts into id arrays with it (``encode_corpus`` does the same for long documents, faster).
"""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer

from sora.data.config import DataConfig
from sora.data.tokenizer import char_vocab, configure_for_task, encode_chars, load_tokenizer_file, train_tokenizer


def tokenizer_for(
    cfg: DataConfig, task: str, given: Tokenizer | None, train_texts: list[str], max_len: int
) -> Tokenizer:
    """The tokenizer for ``task``: ``given`` (copied: the caller's stays untouched), data.tokenizer's
    pretrained file, or one trained on ``train_texts``; set up for the task (specials, truncation)."""
    if given is not None:
        tok, pretrained = Tokenizer.from_str(given.to_str()), True
    elif cfg.tokenizer.kind == "pretrained":
        tok, pretrained = load_tokenizer_file(cfg.tokenizer.path), True
    else:
        tok, pretrained = train_tokenizer(train_texts, cfg.tokenizer, cfg.normalize), False
    return configure_for_task(tok, task, max_len, pretrained=pretrained)


def encode(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Each text's token ids (int32)."""
    return [np.asarray(e.ids, dtype=np.int32) for e in tok.encode_batch(texts)] if texts else []


def encode_corpus(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Long documents: characters map straight through the vocabulary (same ids, far faster)."""
    vocab = char_vocab(tok)
    if vocab is None:
        return encode(tok, texts)
    return [encode_chars(tok, vocab, t) for t in texts]
