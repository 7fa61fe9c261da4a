"""Masked-LM pretraining on the training texts: BERT's corruption, a body that learns to restore words, and a
recipe whose metrics record it."""

import json
import random

import numpy as np
import pytest
import torch
import yaml

from sora.errors import ConfigError
from sora.models import ModelConfig, build_model
from sora.pipeline import run_recipe
from sora.recipe import load_recipe
from sora.train.config import PretrainConfig
from sora.train.pretrain import mask_tokens, pretrain_masked_lm
from sora.train.word_vectors import init_token_embedding, ppmi_vectors

SUBJECTS = ["the cat", "a dog", "my friend", "the teacher", "our neighbour"]
ACTIONS = ["sat on the mat", "ran to the park", "ate the red apple", "read a long book", "sang a sad song"]


def test_masking_chooses_only_real_ordinary_tokens_and_corrupts_as_bert_does():
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(5, 100, (64, 40), generator=g)
    inputs[:, 0] = 4  # [CLS]
    valid = torch.ones_like(inputs, dtype=torch.bool)
    valid[:, 30:] = False
    inputs[~valid] = 0  # [PAD]
    special = torch.arange(5)
    corrupted, chosen = mask_tokens(inputs, valid, special, 1, 100, 0.15, torch.Generator().manual_seed(1))
    assert not chosen[:, 0].any() and not chosen[~valid].any()
    share = chosen.sum().item() / (valid.sum().item() - 64)
    assert 0.12 < share < 0.18
    assert torch.equal(corrupted[~chosen], inputs[~chosen])  # nothing else changes
    unk = (corrupted[chosen] == 1).float().mean().item()
    kept = (corrupted[chosen] == inputs[chosen]).float().mean().item()
    assert 0.74 < unk < 0.86 and 0.05 < kept < 0.16
    again = mask_tokens(inputs, valid, special, 1, 100, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], corrupted) and torch.equal(again[1], chosen)


def sentences_recipe(tmp_path, pretrain: dict | None):
    rng = random.Random(0)
    rows = ["text,label"]
    for _ in range(240):
        s, a = rng.randrange(5), rng.randrange(5)
        rows.append(f"{SUBJECTS[s]} {ACTIONS[a]},{int(a >= 2)}")
    (tmp_path / "sentences.csv").write_text("\n".join(rows) + "\n")
    recipe = {
        "name": "tiny_pretrain",
        "model": {
            "arch": "encoder_classifier",
            "n_classes": 2,
            "vocab_size": 80,
            "d_model": 32,
            "encoder": {"n_layers": 1, "n_heads": 2, "d_ff": 64},
            "max_len": 16,
        },
        "data": {
            "source": str(tmp_path / "sentences.csv"),
            "tokenizer": {"kind": "wordpiece", "vocab_size": 80},
            "max_len": 16,
            "split": {"validation": 0.1, "test": 0.1, "seed": 0},
            "duplicates": "keep",  # 25 sentences, each about ten times: grouped, the split sizes would vary
        },
        "train": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "quiet": True, "pretrain": pretrain},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return load_recipe(path)


@pytest.mark.filterwarnings("ignore::sora.data.duplicates.SplitOverlapWarning")  # repeated on purpose
def test_pretraining_learns_to_restore_masked_words_and_the_run_records_it(tmp_path):
    recipe = sentences_recipe(tmp_path, {"epochs": 30, "lr": 5e-3, "warmup_steps": 10, "mask": 0.3})
    run_recipe(recipe, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    pre = metrics["pretrain"]
    assert pre["steps"] == 30 * (192 // 16)
    # Words follow each other in five fixed phrases: a body that learned them restores most masked words,
    # where guessing the most common word would restore about one in ten.
    assert pre["masked_accuracy"] > 0.5


def test_pretraining_needs_a_text_encoder():
    vit = build_model(
        ModelConfig.model_validate(
            {
                "arch": "encoder_classifier",
                "input": "image",
                "image": {"size": 8, "patch": 4},
                "n_classes": 2,
                "d_model": 16,
                "encoder": {"n_layers": 1, "n_heads": 2, "d_ff": 32},
            }
        )
    )
    with pytest.raises(ConfigError, match="train.pretrain: pretraining on the training texts needs a text encoder"):
        pretrain_masked_lm(vit, None, PretrainConfig(epochs=1), batch_size=4, seed=0, log=print)


def test_word_vectors_put_tokens_used_alike_close_together():
    """Tokens 5 and 6 follow the same words and precede the same words; 7 lives elsewhere."""
    rng = np.random.default_rng(0)
    sequences = []
    for _ in range(300):
        left, right = rng.integers(10, 20), rng.integers(20, 30)
        sequences.append(np.array([left, rng.choice([5, 6]), right]))
        sequences.append(np.array([rng.integers(30, 40), 7, rng.integers(40, 50)]))
    vectors = ppmi_vectors(sequences, vocab_size=50, dim=8)

    def cosine(a, b):
        return vectors[a] @ vectors[b] / (np.linalg.norm(vectors[a]) * np.linalg.norm(vectors[b]))

    assert cosine(5, 6) > 0.9 and abs(cosine(5, 7)) < 0.2
    assert not vectors[:5].any()  # tokens the texts never use keep no vector


def test_a_ppmi_start_keeps_the_embedding_scale_and_unused_rows(tmp_path):
    embedding = torch.nn.Parameter(torch.randn(50, 8) * 0.02)
    before = embedding.detach().clone()
    sequences = [np.array([10 + i % 7, 20 + i % 5, 30 + i % 3]) for i in range(200)]
    figures = init_token_embedding(embedding, sequences)
    used = sorted({int(t) for s in sequences for t in s})
    assert figures["tokens"] == len(used)
    assert torch.equal(embedding[:10], before[:10])  # never used: untouched
    norms = embedding.detach()[used].norm(dim=1).mean() / before.norm(dim=1).mean()
    assert 0.99 < norms.item() < 1.01
