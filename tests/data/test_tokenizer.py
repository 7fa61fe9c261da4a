"""Tokenizers: trained on the training split, fixed special ids, task-specific additions, reloadable."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from sora.data import DataConfig, NormalizeConfig, TokenizerConfig, prepare_data
from sora.data.tokenizer import SPECIALS, configure_for_task, train_tokenizer
from sora.errors import SoraError
from tests.data.util import sentiment_rows, write_csv

TEXTS = [t for _, t in sentiment_rows(80)]


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "char"])
def test_every_kind_trains_with_fixed_special_ids_and_round_trips(kind):
    tok = train_tokenizer(TEXTS, TokenizerConfig(kind=kind, vocab_size=300, min_frequency=1), NormalizeConfig())
    assert [tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3, 4]
    assert tok.get_vocab_size() <= 300
    text = "a fine and moving film"
    assert tok.decode(tok.encode(text).ids).replace(" ", "") == text.replace(" ", "")
    if kind == "char":
        assert tok.decode(tok.encode(text).ids) == text and len(tok.encode(text).ids) == len(text)


def test_task_decides_what_the_tokenizer_adds():
    tok = train_tokenizer(TEXTS, TokenizerConfig(kind="wordpiece", vocab_size=200, min_frequency=1), NormalizeConfig())
    cls = configure_for_task(Tokenizer.from_str(tok.to_str()), "classification", max_len=5)
    ids = cls.encode("a fine and moving film number one").ids
    assert ids[0] == 4 and len(ids) == 5  # [CLS] first, truncated to max_len
    s2s = configure_for_task(Tokenizer.from_str(tok.to_str()), "seq2seq", max_len=4)
    assert s2s.encode("a fine and moving film").ids[-1] == 3 and len(s2s.encode("a fine and moving film").ids) == 4
    lm = configure_for_task(Tokenizer.from_str(tok.to_str()), "lm", max_len=4)
    assert 4 not in lm.encode("a fine film").ids and 3 not in lm.encode("a fine film").ids


def test_normalisation_lives_in_the_tokenizer():
    tok = train_tokenizer(
        TEXTS,
        TokenizerConfig(kind="wordpiece", vocab_size=200, min_frequency=1),
        NormalizeConfig(lowercase=True, stopwords=True),
    )
    assert tok.normalizer.normalize_str("  The FILM and the Cast ") == "film cast"
    assert tok.normalizer.normalize_str("ﬁne") == "fine"  # NFKC: the ligature becomes two letters
    custom = NormalizeConfig(stopwords=["film"], nfkc=False)
    tok = train_tokenizer(TEXTS, TokenizerConfig(kind="char", vocab_size=100), custom)
    assert tok.normalizer.normalize_str("a film, a filmic film") == "a , a filmic"


def test_pretrained_tokenizer_file_and_reuse(tmp_path):
    path = write_csv(tmp_path / "r.csv", sentiment_rows(40))
    base = {"source": str(path), "split": {"validation": 0.0, "test": 0.0}}
    first = prepare_data(DataConfig.model_validate({**base, "tokenizer": {"kind": "bpe", "vocab_size": 400}}))
    first.tokenizer.save(str(tmp_path / "tokenizer.json"))
    again = prepare_data(
        DataConfig.model_validate(
            {**base, "tokenizer": {"kind": "pretrained", "path": str(tmp_path / "tokenizer.json")}}
        )
    )
    reused = prepare_data(
        DataConfig.model_validate(base), tokenizer=Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    )
    for other in (again, reused):
        assert [x.tolist() for x in other.splits["train"].ids] == [x.tolist() for x in first.splits["train"].ids]
    with pytest.raises(SoraError, match="not a tokenizer.json"):
        (tmp_path / "bad.json").write_text("{}")
        prepare_data(
            DataConfig.model_validate({**base, "tokenizer": {"kind": "pretrained", "path": str(tmp_path / "bad.json")}})
        )


def test_tokenizer_without_padding_token_at_zero_is_refused():
    from tokenizers import models

    tok = Tokenizer(models.WordLevel({"hello": 0, "[PAD]": 1}, unk_token="hello"))
    with pytest.raises(SoraError, match="padding token has id 1"):
        configure_for_task(tok, "classification", 8, pretrained=True)
