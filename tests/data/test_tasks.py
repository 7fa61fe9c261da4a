"""Batches for every task follow the contract: language modelling, seq2seq, CTC, images with augmentation."""

from __future__ import annotations

import json

import numpy as np
import torch

from sora.data import DataConfig, prepare_data
from tests.data.test_formats import _wav_bytes

NO_SPLIT = {"validation": 0.0, "test": 0.0}


def test_lm_blocks_are_shifted_next_tokens(tmp_path):
    (tmp_path / "c.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    data = prepare_data(
        DataConfig.model_validate(
            {
                "source": str(tmp_path / "c.txt"),
                "task": "lm",
                "block_size": 32,
                "tokenizer": {"kind": "char"},
                "split": {"validation": 0.1, "test": 0.0},
            }
        )
    )
    batch = next(iter(data.loader("train", 4, shuffle=True)))
    assert set(batch) == {"inputs", "labels"} and batch["inputs"].shape == (4, 32)
    assert torch.equal(batch["inputs"][:, 1:], batch["labels"][:, :-1])
    assert data.num_batches("train", 4) == len(list(data.loader("train", 4)))
    assert len(data.splits["validation"]) > 0
    assert data.model_fields()["bos_id"] == 2 and data.model_fields()["eos_id"] == 3


def test_seq2seq_batch(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with open(path, "w") as f:
        for i in range(40):
            f.write(json.dumps({"en": f"the house number {i}", "es": f"la casa numero {i}", "ch": i // 4}) + "\n")
    data = prepare_data(
        DataConfig.model_validate(
            {
                "source": str(path),
                "task": "seq2seq",
                "columns": {"source": "en", "target": "es", "group": "ch"},
                "tokenizer": {"kind": "wordpiece", "vocab_size": 120, "min_frequency": 1},
                "max_target_len": 6,
            }
        )
    )
    b = next(iter(data.loader("train", 8)))
    assert set(b) == {"src", "src_valid", "tgt_in", "tgt_out", "tgt_valid"}
    assert (b["tgt_in"][:, 0] == data.bos_id).all()
    real = b["tgt_valid"]
    assert torch.equal(b["tgt_in"][:, 1:][real[:, 1:]], b["tgt_out"][:, :-1][real[:, 1:]])  # shifted by one
    assert (b["tgt_out"][~real] == -100).all() and b["tgt_out"].shape[1] <= 6
    last = real.sum(1) - 1
    assert (b["tgt_out"][torch.arange(8), last] == data.eos_id).all()  # targets end with [EOS]
    assert (b["src"][torch.arange(8), b["src_valid"].sum(1) - 1] == data.eos_id).all()
    decoded = data.tokenizer.decode(b["tgt_out"][0][real[0]].tolist())
    assert decoded.startswith("la casa numero")


def test_ctc_batch_from_a_wav_folder_with_transcripts(tmp_path):
    root = tmp_path / "speech"
    (root / "clips").mkdir(parents=True)
    rows = ["file,text"]
    rng = np.random.default_rng(0)
    for i in range(6):
        text = ["ab", "ba", "abba"][i % 3]
        (root / "clips" / f"{i}.wav").write_bytes(_wav_bytes(0.1 * rng.standard_normal(1600 * (1 + i % 3)), 16000))
        rows.append(f"{i}.wav,{text}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    data = prepare_data(DataConfig.model_validate({"source": str(root), "task": "ctc", "split": NO_SPLIT}))
    assert data.labels == ["<blank>", "a", "b"]
    b = next(iter(data.loader("train", 6, bucket=False)))
    assert set(b) == {"inputs", "valid", "targets", "target_lengths"}
    texts = data.splits["train"].texts  # in the order of the (unshuffled, unbucketed) batch
    assert b["target_lengths"].tolist() == [len(t) for t in texts]
    for row, text in zip(b["targets"].tolist(), texts):
        assert row == [" ab".index(c) for c in text] + [0] * (4 - len(text))  # padded with 0 (the blank)


def test_image_augmentation_is_seeded_and_train_only(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", image=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8), label=np.arange(40) % 2)
    data = prepare_data(
        DataConfig.model_validate({"source": str(tmp_path / "d.npz"), "augment": {"flip": True, "shift": 2}})
    )
    a = next(iter(data.loader("train", 8, seed=1)))["inputs"]
    b = next(iter(data.loader("train", 8, seed=1)))["inputs"]
    c = next(iter(data.loader("train", 8, seed=2)))["inputs"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    v1, v2 = (next(iter(data.loader("validation", 4, seed=s)))["inputs"] for s in (1, 2))
    assert torch.equal(v1, v2)  # no augmentation outside training


def test_audio_noise_and_shift_augmentation_is_seeded(tmp_path):
    t = np.arange(8000) / 16000
    for label, freq in (("a", 400.0), ("b", 2000.0)):
        (tmp_path / "w" / label).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "w" / label / f"{i}.wav").write_bytes(_wav_bytes(0.5 * np.sin(2 * np.pi * freq * t), 16000))
    cfg = {"source": str(tmp_path / "w"), "split": NO_SPLIT, "augment": {"noise_snr": [5, 10], "time_shift": 0.05}}
    data = prepare_data(DataConfig.model_validate(cfg))
    a, b, c = (next(iter(data.loader("train", 8, seed=s)))["inputs"] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    clean = prepare_data(DataConfig.model_validate({**cfg, "augment": {}}))
    x = next(iter(clean.loader("train", 8, seed=1)))["inputs"]
    assert a.shape == x.shape and not torch.allclose(a, x)


def test_preprocessing_reproduces_training_inputs_at_inference(tmp_path):
    from sora.data.preprocess import images_to_inputs, waves_to_inputs

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (12, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", image=images, label=np.arange(12) % 2)
    data = prepare_data(DataConfig.model_validate({"source": str(tmp_path / "d.npz"), "split": NO_SPLIT}))
    prep = json.loads(json.dumps(data.preprocessing()))  # survives meta.json
    ex = data.splits["train"]
    assert torch.allclose(images_to_inputs(ex.images[:4], prep), ex.batch(np.arange(4))["inputs"])
    (tmp_path / "w" / "x").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "w" / "x" / f"{i}.wav").write_bytes(_wav_bytes(0.3 * rng.standard_normal(8000 + 800 * i), 16000))
    data = prepare_data(DataConfig.model_validate({"source": str(tmp_path / "w"), "split": NO_SPLIT}))
    prep = json.loads(json.dumps(data.preprocessing()))
    ex = data.splits["train"]
    waves_8k = [w[::2] for w in ex.waves]  # new audio may come at another rate
    inputs, valid = waves_to_inputs(ex.waves, 16000, prep)
    batch = ex.batch(np.arange(3))
    assert torch.allclose(inputs, batch["inputs"], atol=1e-5) and torch.equal(valid, batch["valid"])
    assert waves_to_inputs(waves_8k, 8000, prep)[0].shape[:2] == (3, prep["n_mels"])
