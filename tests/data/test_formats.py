"""Every format reads back to the examples written: text, CSV, TSV, JSONL, Parquet, IDX, NPZ, folders."""

from __future__ import annotations

import gzip
import io
import json
import struct
import wave

import numpy as np
import pytest

from sora.data import DataConfig, prepare_data
from sora.data.formats import infer_format, parse_idx, read_idx
from sora.errors import SoraError
from tests.data.util import sentiment_rows, write_csv

ROWS = sentiment_rows(40)
NO_SPLIT = {"validation": 0.0, "test": 0.0}


def _texts(data, split="train"):
    return sorted(data.splits[split].texts)


def _prepare(source, **extra):
    cfg = {"source": str(source), "tokenizer": {"kind": "wordpiece", "vocab_size": 200}, "split": NO_SPLIT, **extra}
    return prepare_data(DataConfig.model_validate(cfg))


def test_csv_and_tsv_and_gzip_read_back(tmp_path):
    expected = sorted(t for _, t in ROWS)
    csv_data = _prepare(write_csv(tmp_path / "a.csv", ROWS))
    tsv_data = _prepare(write_csv(tmp_path / "a.tsv", ROWS, delimiter="\t"))
    gz = tmp_path / "b.csv.gz"
    gz.write_bytes(gzip.compress((tmp_path / "a.csv").read_bytes()))
    gz_data = _prepare(gz)
    assert _texts(csv_data) == _texts(tsv_data) == _texts(gz_data) == expected
    assert csv_data.labels == ["neg", "pos"]  # inferred, sorted
    assert sorted(csv_data.describe()["label_counts"]["train"].values()) == [20, 20]


def test_csv_quoted_commas_and_newlines(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('label,text\npos,"good, really good"\nneg,"two\nlines"\npos,plain\n', encoding="utf-8")
    data = _prepare(path)
    assert _texts(data) == ["good, really good", "plain", "two\nlines"]


def test_jsonl_and_parquet_read_back(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jl = tmp_path / "a.jsonl"
    jl.write_text("\n".join(json.dumps({"label": l, "text": t}) for l, t in ROWS) + "\n", encoding="utf-8")
    pq.write_table(
        pa.table({"label": [l for l, _ in ROWS], "text": [t for _, t in ROWS]}),
        tmp_path / "a.parquet",
        row_group_size=7,
    )  # several row groups: read as a stream
    expected = sorted(t for _, t in ROWS)
    assert _texts(_prepare(jl)) == _texts(_prepare(tmp_path / "a.parquet")) == expected


def test_columns_map_roles_and_label_names_fix_the_order(tmp_path):
    jl = tmp_path / "a.jsonl"
    jl.write_text("\n".join(json.dumps({"y": l, "review": t}) for l, t in ROWS), encoding="utf-8")
    data = _prepare(jl, columns={"text": "review", "label": "y"}, label_names=["pos", "neg"])
    assert data.labels == ["pos", "neg"]
    ex = data.splits["train"]
    assert {data.labels[int(l)] for l, t in zip(ex.labels, ex.texts) if "number 0" in t} == {"pos"}


def test_text_format_is_a_corpus_for_language_modelling(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n" * 50, encoding="utf-8")
    (tmp_path / "b.txt").write_text("goodbye moon\n" * 50, encoding="utf-8")
    data = prepare_data(
        DataConfig.model_validate(
            {
                "source": str(tmp_path / "*.txt"),
                "task": "lm",
                "tokenizer": {"kind": "char"},
                "block_size": 16,
                "split": {"validation": 0.2, "test": 0.0},
            }
        )
    )
    stream = data.splits["train"].stream
    text = data.tokenizer.decode(stream.tolist(), skip_special_tokens=False)
    assert text.startswith("hello world\nhello world")
    assert data.eos_id in stream.tolist()  # documents are joined by [EOS]
    assert "moon" in data.tokenizer.decode(data.splits["validation"].stream.tolist())  # the end is held out


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_idx_images_pair_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 6, 6), dtype=np.uint8)
    labels = np.arange(30, dtype=np.uint8) % 3
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    table = read_idx([str(tmp_path / "train-images-idx3-ubyte.gz"), str(tmp_path / "train-labels-idx1-ubyte.gz")])
    assert table.columns["image"].shape == (30, 6, 6, 1)
    np.testing.assert_array_equal(table.columns["image"][..., 0], images)
    np.testing.assert_array_equal(table.columns["label"], labels)
    data = prepare_data(DataConfig.model_validate({"source": str(tmp_path / "train-*"), "split": NO_SPLIT}))
    assert data.modality == "image" and data.labels == ["0", "1", "2"]
    batch = next(iter(data.loader("train", 8)))
    assert batch["inputs"].shape == (8, 1, 6, 6) and batch["inputs"].dtype.is_floating_point
    assert abs(float(batch["inputs"].mean())) < 0.5  # normalised with the training mean and std


def test_idx_rejects_a_bad_header():
    with pytest.raises(SoraError, match="not an IDX file"):
        parse_idx(b"\x01\x02\x03\x04rest", "x.idx")
    with pytest.raises(SoraError, match="header promises"):
        parse_idx(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3, "short.idx")


def test_npz_reads_without_pickles(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.random((20, 3, 4, 4)).astype(np.float32), y=np.arange(20) % 2)
    data = prepare_data(
        DataConfig.model_validate(
            {"source": str(tmp_path / "d.npz"), "split": NO_SPLIT, "columns": {"image": "x", "label": "y"}}
        )
    )
    assert data.model_fields()["image"] == {"size": 4, "channels": 3}  # (N, C, H, W) read as channels-first
    assert next(iter(data.loader("train", 5)))["inputs"].shape == (5, 3, 4, 4)
    np.savez(tmp_path / "bad.npz", obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SoraError, match="without pickles"):
        prepare_data(DataConfig.model_validate({"source": str(tmp_path / "bad.npz"), "columns": {"image": "obj"}}))


def test_image_folder(tmp_path):
    from PIL import Image

    for label, value in (("cat", 30), ("dog", 220)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), value + i, dtype=np.uint8)).save(tmp_path / "imgs" / label / f"{i}.png")
    assert infer_format(str(tmp_path / "imgs")) == "image_folder"
    data = prepare_data(DataConfig.model_validate({"source": str(tmp_path / "imgs"), "split": NO_SPLIT}))
    assert data.labels == ["cat", "dog"] and len(data.splits["train"]) == 12
    batch = next(iter(data.loader("train", 12, bucket=False)))
    dark = batch["inputs"][batch["labels"] == 0].mean()
    light = batch["inputs"][batch["labels"] == 1].mean()
    assert dark < 0 < light


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_wav_folder_resamples_and_gives_log_mels(tmp_path):
    t = np.arange(8000) / 8000
    for label, freq in (("low", 300.0), ("high", 3000.0)):
        (tmp_path / "wavs" / label).mkdir(parents=True)
        for i in range(4):
            tone = 0.5 * np.sin(2 * np.pi * freq * t[: 4000 + 1000 * i])
            (tmp_path / "wavs" / label / f"{i}.wav").write_bytes(_wav_bytes(tone, 8000))
    data = prepare_data(
        DataConfig.model_validate(
            {"source": str(tmp_path / "wavs"), "split": NO_SPLIT, "sample_rate": 16000, "n_mels": 20}
        )
    )
    assert data.modality == "audio" and data.labels == ["high", "low"]
    assert sorted(len(w) for w in data.splits["train"].waves)[:2] == [8000, 8000]  # 0.5 s at 16 kHz
    batch = next(iter(data.loader("train", 8, bucket=False)))
    assert batch["inputs"].shape[:2] == (8, 20) and batch["valid"].shape == (8, batch["inputs"].shape[2])
    frames = batch["valid"].sum(1)
    assert sorted(set(frames.tolist())) == [51, 63, 76, 88]  # 0.5 .. 0.875 s at a 10 ms hop
    high = batch["inputs"][batch["labels"] == 0][:, 15:, :40].mean()
    low = batch["inputs"][batch["labels"] == 1][:, 15:, :40].mean()
    assert high > low  # energy sits in the upper mel bands for the 3 kHz tone


def test_numeric_labels_sort_as_numbers(tmp_path):
    rows = [(str(i % 12), f"text {i}") for i in range(48)]
    data = _prepare(write_csv(tmp_path / "n.csv", rows))
    assert data.labels == [str(i) for i in range(12)]
