"""Carrying a Hugging Face tokenizer over into a Sora model folder (``tokenizer.json``).

A folder's ``tokenizer.json`` is used as it is, except that its fixed padding and truncation are
switched off: Sora's loaders pad each batch to its longest row and truncate to the recipe's
``max_len`` (a tokenizer that pads everything to 128 would waste most of the compute on short
snippets). Older folders have only ``vocab.txt`` (BERT, DistilBERT: WordPiece) or ``vocab.json``
plus ``merges.txt`` (GPT-2, RoBERTa: byte-level BPE); the same tokenizer is then built from
those files with the ``tokenizers`` library.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from sora.errors import SoraError, first_line
from sora.interop.checkpoint import read_side_json
from sora.paths import existing_file


def carry_tokenizer(folder: Path, model_type: str) -> tuple[Tokenizer | None, str]:
    """The folder's tokenizer, and which file it came from ("" when there is none, e.g. ViT)."""
    path = existing_file(folder, "tokenizer.json")
    if path is not None:
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001  the Rust side raises plain Exceptions
            raise SoraError(f"{path}: cannot read tokenizer ({first_line(e)})") from None
        tok.no_padding()
        tok.no_truncation()
        return tok, "tokenizer.json"
    settings = read_side_json(folder, "tokenizer_config.json") or {}
    files = {name: existing_file(folder, name) for name in ("vocab.txt", "vocab.json", "merges.txt")}
    try:
        if files["vocab.txt"] is not None:
            return _wordpiece(files["vocab.txt"], settings), "vocab.txt"
        if files["vocab.json"] is not None and files["merges.txt"] is not None:
            return _byte_level_bpe(files["vocab.json"], files["merges.txt"], model_type), "vocab.json + merges.txt"
    except SoraError:
        raise
    except Exception as e:  # noqa: BLE001  the Rust side raises plain Exceptions on a damaged file
        raise SoraError(f"{folder}: cannot build the tokenizer from its vocabulary files ({first_line(e)})") from None
    return None, ""


def _wordpiece(vocab_file: Path, settings: dict) -> Tokenizer:
    """BERT's tokenizer: lower-casing normaliser, WordPiece, ``[CLS] text [SEP]``."""
    tok = Tokenizer(models.WordPiece.from_file(str(vocab_file), unk_token=settings.get("unk_token", "[UNK]")))
    lowercase = bool(settings.get("do_lower_case", True))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
        strip_accents=settings.get("strip_accents"),
        lowercase=lowercase,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = settings.get("cls_token", "[CLS]"), settings.get("sep_token", "[SEP]")
    ids = {t: tok.token_to_id(t) for t in (cls, sep)}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise SoraError(f"{vocab_file}: special tokens {missing} are not in the vocabulary")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = [
        settings.get(k, v)
        for k, v in (
            ("pad_token", "[PAD]"),
            ("unk_token", "[UNK]"),
            ("cls_token", cls),
            ("sep_token", sep),
            ("mask_token", "[MASK]"),
        )
    ]
    tok.add_special_tokens([s for s in specials if isinstance(s, str) and tok.token_to_id(s) is not None])
    return tok


def _byte_level_bpe(vocab: Path, merges: Path, model_type: str) -> Tokenizer:
    """GPT-2's byte-level BPE; RoBERTa adds ``<s> text </s>`` around it."""
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if model_type == "roberta":
        bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        if bos is None or eos is None:
            raise SoraError(f"{vocab}: RoBERTa's <s> and </s> are not in the vocabulary")
        tok.post_processor = processors.RobertaProcessing(("</s>", eos), ("<s>", bos))
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [
        t for t in ("<s>", "</s>", "<pad>", "<unk>", "<mask>", "<|endoftext|>") if tok.token_to_id(t) is not None
    ]
    tok.add_special_tokens(specials)
    return tok


def tokenizer_settings(folder: Path) -> dict:
    """The small JSON files transformers' AutoTokenizer reads besides tokenizer.json (kept for export)."""
    kept = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = read_side_json(folder, name)
        if data is not None:
            kept[name] = data
    return kept
