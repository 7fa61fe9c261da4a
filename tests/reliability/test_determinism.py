"""Determinism: the same recipe and seed give identical metrics and weights on one machine (issue 19, defect 9).

The run-to-run difference came from HF's WordPiece trainer, which numbers ``##c`` symbols in the
order of a randomly seeded Rust HashMap; everything after the tokenizer (split, batch plan, seeds,
one torch thread, the TF-IDF baseline) was already a function of the recipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from sora.data import NormalizeConfig, TokenizerConfig
from sora.data.tokenizer import SPECIALS, UNK, normalizer, train_tokenizer
from tests.helpers import fuzz

RECIPE = "recipes/sentiment.yaml"
WALL_CLOCK = {"seconds", "minutes", "examples_per_s", "tokens_per_s", "model_dir"}  # model_dir: the --out path
SMALLER = ["--set", "train.quiet=true", "--set", "data.limit=200", "--set", "train.max_steps=5"]  # quick, quicker
WEIGHTS = ("model/model.safetensors", "best/model.safetensors")

words = st.text(alphabet="abcdeéAÉ\u0301'#-.,", min_size=1, max_size=8)  # cases, NFKC, punctuation
corpora = st.lists(st.lists(words, min_size=1, max_size=6).map(" ".join), min_size=1, max_size=25)


def _plain_wordpiece(texts: list[str], cfg: TokenizerConfig, norm: NormalizeConfig) -> Tokenizer:
    """HF's trainer as is: its vocabulary is right, only its numbering varies."""
    tok = Tokenizer(models.WordPiece(unk_token=UNK))
    tok.normalizer = normalizer(norm, cfg.lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts,
        trainer=trainers.WordPieceTrainer(
            vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=SPECIALS, show_progress=False
        ),
    )
    return tok


def _symbols(tok: Tokenizer) -> dict[str, int]:
    """Specials, characters and ``##c`` continuations: what the trainer numbers before any merge."""
    return {t: i for t, i in tok.get_vocab().items() if len(t.removeprefix("##")) == 1 or t in SPECIALS}


@fuzz(40)
@given(texts=corpora, vocab_size=st.integers(20, 120), lowercase=st.booleans())
def test_wordpiece_training_is_a_function_of_its_texts(texts, vocab_size, lowercase):
    cfg = TokenizerConfig(kind="wordpiece", vocab_size=vocab_size, min_frequency=1, lowercase=lowercase)
    norm = NormalizeConfig()
    first, second = (train_tokenizer(texts, cfg, norm) for _ in range(2))
    assert first.to_str() == second.to_str()
    plain = _plain_wordpiece(texts, cfg, norm)
    assert set(_symbols(first)) == set(_symbols(plain))  # the same symbols the trainer makes, none more
    assert [t.content for t in first.get_added_tokens_decoder().values()] == SPECIALS  # the rest stay plain vocabulary
    symbols = sorted(_symbols(first), key=_symbols(first).get)
    chars = [t for t in symbols if t not in SPECIALS and not t.startswith("##")]
    assert symbols[: len(SPECIALS)] == SPECIALS and chars == sorted(chars)


def test_wordpiece_continuations_are_not_special_tokens():
    tok = train_tokenizer(
        ["the film", "then a thin thing", "#1"],
        TokenizerConfig(kind="wordpiece", vocab_size=40, min_frequency=1),
        NormalizeConfig(),
    )
    assert tok.encode("##h").tokens == ["#", "#", "h"]  # "##h" typed in a text is text, not the symbol ##h


def _train(out: Path, hash_seed: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-m", "sora", "train", RECIPE, "--profile", "quick", "--out", str(out), *SMALLER],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _without_wall_clock(value):
    if isinstance(value, dict):
        return {k: _without_wall_clock(v) for k, v in value.items() if k not in WALL_CLOCK}
    if isinstance(value, list):
        return [_without_wall_clock(v) for v in value]
    return value


def test_the_sentiment_recipe_twice_gives_identical_metrics_and_weights(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out, hash_seed in zip(runs, ("1", "2")):
        proc = _train(out, hash_seed)
        assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = (json.loads((out / "metrics.json").read_text()) for out in runs)
    assert "baseline" in a and "test" in a
    assert _without_wall_clock(a) == _without_wall_clock(b)
    assert (runs[0] / "model/tokenizer.json").read_bytes() == (runs[1] / "model/tokenizer.json").read_bytes()
    for name in WEIGHTS:
        x, y = (load_file(out / name) for out in runs)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
