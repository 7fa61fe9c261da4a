"""Tokenizers (Hugging Face ``tokenizers``): train BPE, WordPiece or characters, or load a tokenizer.json.

Special tokens come first and in a fixed order, so ids agree across tokenizers: [PAD]=0, [UNK]=1,
[BOS]=2, [EOS]=3, [CLS]=4. The task decides what the tokenizer adds by itself, so that whoever
later loads it from a model folder encodes exactly as training did: classification prepends [CLS]
and truncates to ``max_len``; seq2seq appends [EOS]; a language model adds nothing. Normalisation
(NFKC, case, stripping, stop words) is part of the tokenizer for the same reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from sora.data.config import NormalizeConfig, TokenizerConfig
from sora.data.sources import read_bytes
from sora.errors import SoraError

PAD, UNK, BOS, EOS, CLS = "[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]"
SPECIALS = [PAD, UNK, BOS, EOS, CLS]
_ALIASES = {
    PAD: ("[PAD]", "<pad>", "<|pad|>"),
    BOS: ("[BOS]", "<s>", "<bos>", "<|startoftext|>"),
    EOS: ("[EOS]", "</s>", "<eos>", "<|endoftext|>"),
    CLS: ("[CLS]", "<cls>"),
}


def normalizer(cfg: NormalizeConfig, lowercase: bool = False) -> normalizers.Normalizer | None:
    steps = []
    if cfg.nfkc:
        steps.append(normalizers.NFKC())
    if cfg.lowercase or lowercase:
        steps.append(normalizers.Lowercase())
    if cfg.stopwords:
        words = stopword_list() if cfg.stopwords is True else list(cfg.stopwords)
        pattern = r"(?i)\b(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b"
        steps.append(normalizers.Replace(Regex(pattern), ""))
        steps.append(normalizers.Replace(Regex(r"\s{2,}"), " "))
    if cfg.strip:
        steps.append(normalizers.Strip())
    return normalizers.Sequence(steps) if steps else None


def stopword_list() -> list[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # 318 words; sklearn: 1.7 s to import

    return sorted(ENGLISH_STOP_WORDS)


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, normalize: NormalizeConfig) -> Tokenizer:
    """Train ``cfg.kind`` on ``texts`` (the training split only: nothing of validation/test leaks)."""
    if cfg.kind == "bpe":  # byte-level: every string is representable, no [UNK]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif cfg.kind == "wordpiece":
        return _train_wordpiece(texts, cfg, normalizer(normalize, cfg.lowercase))
    elif cfg.kind == "char":
        return _train_chars(texts, cfg, normalizer(normalize, cfg.lowercase))
    else:
        raise SoraError(f"data.tokenizer.kind: cannot train a '{cfg.kind}' tokenizer")
    tok.normalizer = normalizer(normalize, cfg.lowercase)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _train_wordpiece(texts: Iterable[str], cfg: TokenizerConfig, norm) -> Tokenizer:
    """WordPiece, trained so that the same texts always give the same vocabulary.

    HF's trainer numbers the ``##c`` continuation symbols in the iteration order of a Rust HashMap
    (randomly seeded in every process), and ties between equally frequent merges go to the lower
    ids: the vocabulary then differs from run to run. Registering the alphabet and its continuations
    up front, sorted, as the trainer's leading tokens fixes every id; they are then dropped from the
    added (special) tokens, so they stay ordinary vocabulary entries, as the trainer would make them.
    """
    texts = list(texts)
    tok = Tokenizer(models.WordPiece(unk_token=UNK))
    tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    symbols = _wordpiece_symbols(tok, texts)
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=SPECIALS + symbols,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    spec = json.loads(tok.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in SPECIALS]
    return Tokenizer.from_str(json.dumps(spec))


def _wordpiece_symbols(tok: Tokenizer, texts: list[str]) -> list[str]:
    """The characters, then the ``##c`` continuations, that the trainer starts from, each sorted by code point.

    A trainer stopped before its first merge (``vocab_size=1``) makes exactly these, in its random order.
    """
    probe = Tokenizer.from_str(tok.to_str())
    probe.train_from_iterator(texts, trainer=trainers.WordPieceTrainer(vocab_size=1, show_progress=False))
    symbols = probe.get_vocab(with_added_tokens=False)
    return sorted(c for c in symbols if len(c) == 1) + sorted(c for c in symbols if len(c) > 1)


def _train_chars(texts: Iterable[str], cfg: TokenizerConfig, norm) -> Tokenizer:
    """Characters: one id per character seen at least ``min_frequency`` times, most frequent first.

    Counting characters directly is what WordLevelTrainer would do over one-character words, and
    about 30x faster on a 4 M character corpus.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(norm.normalize_str(text) if norm is not None else text)
    chars = sorted((c for c, n in counts.items() if n >= cfg.min_frequency), key=lambda c: (-counts[c], c))
    chars = [c for c in chars if c not in SPECIALS][: cfg.vocab_size - len(SPECIALS)]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    for special in SPECIALS:
        tok.add_special_tokens([AddedToken(special, special=True, normalized=False)])
    return tok


def char_vocab(tok: Tokenizer) -> dict[str, int] | None:
    """The character table of a character-level tokenizer (ours), else None."""
    spec = json.loads(tok.to_str())
    pre = spec.get("pre_tokenizer") or {}
    if (
        spec["model"].get("type") != "WordLevel"
        or pre.get("type") != "Split"
        or pre.get("pattern", {}).get("Regex") != r"[\s\S]"
        or spec.get("post_processor")
    ):
        return None
    return tok.get_vocab(with_added_tokens=False)


def encode_chars(tok: Tokenizer, vocab: dict[str, int], text: str) -> np.ndarray:
    """What ``tok.encode(text).ids`` gives for a character tokenizer, without building 4 M tokens."""
    norm = tok.normalizer
    text = norm.normalize_str(text) if norm is not None else text
    unk = vocab[UNK]
    return np.fromiter((vocab.get(c, unk) for c in text), dtype=np.int32, count=len(text))


def load_tokenizer_file(path: str | Path, normalize: NormalizeConfig | None = None) -> Tokenizer:
    """A pretrained tokenizer.json (local or any fsspec URL); its own normalisation is kept."""
    try:
        tok = Tokenizer.from_str(read_bytes(str(path)).decode("utf-8"))
    except SoraError:
        raise
    except Exception as e:  # tokenizers raises plain Exceptions for bad JSON
        raise SoraError(f"{path}: not a tokenizer.json ({e})") from None
    return tok


def special_id(tok: Tokenizer, token: str) -> int | None:
    for name in _ALIASES.get(token, (token,)):
        i = tok.token_to_id(name)
        if i is not None:
            return i
    return None


def _cls_template(cls: int, eos: int | None) -> processors.TemplateProcessing:
    """``[CLS] a`` for one text; ``[CLS] a [EOS] b [EOS]`` with segment ids 0 then 1 for a pair (BERT's layout,
    with our end token as the separator)."""
    if eos is None:
        return processors.TemplateProcessing(single=f"{CLS} $A", special_tokens=[(CLS, cls)])
    return processors.TemplateProcessing(
        single=f"{CLS} $A", pair=f"{CLS} $A:0 {EOS}:0 $B:1 {EOS}:1", special_tokens=[(CLS, cls), (EOS, eos)]
    )


def configure_for_task(tok: Tokenizer, task: str, max_len: int, *, pretrained: bool = False) -> Tokenizer:
    """Set what the tokenizer adds by itself for ``task`` (see the module docstring), and truncation."""
    pad = special_id(tok, PAD)
    if pad is None:
        raise SoraError("tokenizer has no padding token ([PAD] or <pad>); Sora pads with id 0")
    if pad != 0:
        raise SoraError(f"tokenizer's padding token has id {pad}; Sora's models pad with id 0")
    cls, eos = special_id(tok, CLS), special_id(tok, EOS)
    if not pretrained:  # a pretrained tokenizer keeps its own post-processor (e.g. BERT's [CLS] ... [SEP])
        if task in ("classification", "span") and cls is not None:
            tok.post_processor = _cls_template(cls, eos)
        elif task == "seq2seq":
            if eos is None:
                raise SoraError("seq2seq needs an end-of-sequence token ([EOS] or </s>) in the tokenizer")
            tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, eos)])
        else:
            tok.post_processor = None
    if task in ("classification", "seq2seq", "span"):
        tok.enable_truncation(max_len)
    else:
        tok.no_truncation()
    tok.no_padding()  # the loader pads per batch (dynamic padding)
    return tok
