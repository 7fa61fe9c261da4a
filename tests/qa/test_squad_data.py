"""The built-in dataset squad, from a tiny SQuAD written by the test into a stand-in bigbench package: split by
article, SQuADShifts as extra test splits, answer starts recovered and counted, batches in the span contract."""

from __future__ import annotations

import json

from sora.data import DataConfig, builtin, prepare_data
from sora.data.build_span import answer_span
from tests.helpers import run_cli
from tests.qa.fixture import use_fake_bigbench

WORDPIECE = {"kind": "wordpiece", "vocab_size": 300, "min_frequency": 1}


def squad_data(**overrides):
    cfg = {"dataset": "squad", "tokenizer": WORDPIECE, "max_len": 32, "stride": 8, **overrides}
    return prepare_data(DataConfig(**cfg))


def test_fetch_copies_the_five_files_from_an_installed_bigbench(monkeypatch, tmp_path, capsys):
    use_fake_bigbench(monkeypatch, tmp_path)
    code, out, _ = run_cli(capsys, "data", "fetch", "squad")
    assert code == 0
    folder = builtin.get("squad").folder
    assert sorted(p.name for p in folder.glob("*_v1.*.json")) == sorted(
        ["squaddev_v1.1.json", "new_wiki_v1.0.json", "nyt_v1.0.json", "reddit_v1.0.json", "amazon_reviews_v1.0.json"]
    )
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["questions"]["all"] == 8 * 3 * 2


def test_squad_splits_by_article_and_adds_the_shifts_as_test_splits(monkeypatch, tmp_path):
    use_fake_bigbench(monkeypatch, tmp_path)
    data = squad_data(split={"validation": 0.25, "test": 0.25})
    assert set(data.splits) == {"train", "validation", "test", "new_wiki", "nyt", "reddit", "amazon"}
    articles = {}
    for split in ("train", "validation", "test"):
        for q in data.splits[split].questions:
            number = int(q.context.split("city number ")[1].split(".")[0])
            articles.setdefault(number // 3, set()).add(split)  # three paragraphs an article
    assert len(articles) == 8 and all(len(s) == 1 for s in articles.values())
    assert len(data.splits["reddit"]) == 1 * 2 * 2
    assert data.model_fields()["segments"] == 2 and data.task == "span"


def test_answer_starts_off_by_a_few_characters_are_recovered_and_counted(monkeypatch, tmp_path):
    use_fake_bigbench(monkeypatch, tmp_path)
    data = squad_data()
    counts = data.info["answer_start"]
    assert sum(c["recovered"] for c in counts.values()) > 0
    assert all(c["not_found"] == 0 for c in counts.values())
    assert answer_span("a b c b", "b", 5) == ((6, 7), "recovered")  # the occurrence nearest the given start
    assert answer_span("a b c", "d", 0) == (None, "not_found")


def test_batches_hold_every_window_of_their_questions_with_the_answer_tokens(monkeypatch, tmp_path):
    use_fake_bigbench(monkeypatch, tmp_path)
    data = squad_data()
    batch = next(iter(data.loader("train", 4)))
    W = batch["inputs"].shape[0]
    assert W >= 4 and len(batch["contexts"]) == 4 and batch["window_of"].max() == 3
    assert batch["segments"].shape == batch["offsets"].shape[:2] == batch["inputs"].shape
    for w in range(W):
        start, end = int(batch["starts"][w]), int(batch["ends"][w])
        if start:
            context = batch["contexts"][int(batch["window_of"][w])]
            text = context[int(batch["offsets"][w, start, 0]) : int(batch["offsets"][w, end, 1])]
            assert text in batch["answers"][int(batch["window_of"][w])]
    assert any(int(s) == 0 for s in batch["starts"]) or W == 4  # windows without the answer point at [CLS]
