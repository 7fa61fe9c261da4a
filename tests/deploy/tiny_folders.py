"""Tiny model folders of every task a Predictor serves, saved as training leaves them (tokenizer, labels,
task and preprocessing in meta.json), and the raw data they read. Untrained: the tests compare the
predictor with the model itself, not with the truth."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sora.data import NormalizeConfig, TokenizerConfig, prepare_data
from sora.data.tokenizer import configure_for_task, train_tokenizer
from sora.models import build_model, save_model
from tests.helpers import tiny

NO_SPLIT = {"validation": 0.0, "test": 0.0}
REVIEWS = [
    ("a fine and moving film", "pos"),
    ("great acting and a smart script", "pos"),
    ("lovely warm and funny", "pos"),
    ("a dull and tedious mess", "neg"),
    ("boring plot flat acting", "neg"),
    ("badly written and far too long", "neg"),
]
BOOK = "the cat sat on the mat. the dog sat on the log.\n" * 8
PAIRS = [("the cat", "el gato"), ("the dog", "el perro"), ("a cat sat", "un gato"), ("the mat", "la alfombra")]
RATE = 16000
ROME = "Rome is a city number 7. The river Tiber flows through Rome and people like it very much."
QUESTIONS = [  # (question, context) pairs; the last context is far longer than a 24-token window
    {"question": "Which river flows through Rome?", "context": ROME},
    {"question": "What number is Paris?", "context": "Paris is a city number 3. The river Seine flows through Paris."},
    {"question": "Who likes it?", "context": "People like it very much."},
    {"question": "Which river?", "context": " ".join([ROME] * 5)},
]


def save(folder: Path, data, arch: str, meta: dict | None = None, **overrides) -> Path:
    """An untrained tiny model sized by ``data``, saved with its tokenizer and the meta.json training writes."""
    torch.manual_seed(0)
    model = build_model(tiny(arch, **{**data.model_fields(), **overrides})).eval()
    meta = {
        "task": data.task,
        "labels": data.labels,
        "preprocessing": data.preprocessing(),
        "provenance": {"data_config": data.config.model_dump(mode="json")},
        **(meta or {}),
    }
    return save_model(model, folder, tokenizer=data.tokenizer, meta=meta)


def text_classifier(root: Path, **overrides) -> Path:
    (root / "reviews.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in REVIEWS * 4))
    data = prepare_data(
        {
            "source": str(root / "reviews.csv"),
            "split": NO_SPLIT,
            "tokenizer": {"kind": "wordpiece", "vocab_size": 80, "min_frequency": 1},
        }
    )
    return save(root / "classifier", data, "encoder_classifier", **overrides)


def char_lm(root: Path, **overrides) -> Path:
    (root / "book.txt").write_text(BOOK)
    data = prepare_data(
        {
            "source": str(root / "book.txt"),
            "format": "text",
            "task": "lm",
            "tokenizer": {"kind": "char", "min_frequency": 1},
            "block_size": 16,
        }
    )
    return save(root / "lm", data, "decoder_lm", **{"max_len": 24, **overrides})


def translator(root: Path, **overrides) -> Path:
    (root / "pairs.csv").write_text("source,target\n" + "".join(f"{s},{t}\n" for s, t in PAIRS * 3))
    data = prepare_data(
        {
            "source": str(root / "pairs.csv"),
            "task": "seq2seq",
            "split": NO_SPLIT,
            "tokenizer": {"kind": "char", "min_frequency": 1},
        }
    )
    return save(root / "translator", data, "seq2seq", **{"max_len": 32, **overrides})


def images(n: int = 6, size: int = 8) -> np.ndarray:
    """(n, size, size) grey uint8 pixels."""
    return np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)


def image_classifier(root: Path) -> Path:
    pixels = images(12)
    np.savez(root / "images.npz", image=pixels, label=np.arange(12) % 3)
    data = prepare_data({"source": str(root / "images.npz"), "split": NO_SPLIT})
    image = {"size": 8, "channels": 1, "patch": 4}
    return save(root / "vision", data, "encoder_classifier", input="image", image=image)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes())
    return buf.getvalue()


def clips(n: int = 6) -> list[np.ndarray]:
    """Noisy tones of different lengths (0.1-0.35 s), exactly representable as 16-bit WAV samples."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        t = np.arange(1600 * (2 + i % 6)) / RATE
        wave_ = 0.4 * np.sin(2 * np.pi * (300 + 200 * i) * t) + 0.05 * rng.standard_normal(len(t))
        out.append(np.round(np.clip(wave_, -1, 1) * 32767) / 32768)
    return out


def wav_folder(root: Path, with_transcripts: bool = False) -> Path:
    """``root/speech/<label>/<i>.wav`` (and a metadata.csv of transcripts for CTC)."""
    folder = root / "speech"
    rows = ["file,text"]
    for i, samples in enumerate(clips()):
        label = "low" if i % 2 else "high"
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / f"{i}.wav").write_bytes(wav_bytes(samples))
        rows.append(f"{i}.wav,{['ab', 'ba', 'abba'][i % 3]}")
    if with_transcripts:
        (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return folder


def audio_model(root: Path, task: str, **overrides) -> Path:
    """An audio classifier (task "classification") or a CTC recogniser (task "ctc")."""
    source = wav_folder(root / task, with_transcripts=task == "ctc")
    data = prepare_data({"source": str(source), "task": task, "split": NO_SPLIT, "n_mels": 16})
    arch = "encoder_classifier" if task == "classification" else "token_classifier"
    audio = {"input": "audio", "audio": {"n_mels": 16, "patch_frames": 4}}
    return save(root / f"{task}_model", data, arch, **audio, **overrides)


def pair_tokenizer(task: str, max_len: int):
    """A WordPiece tokenizer trained on QUESTIONS, set up as training sets it up for ``task`` (pairs:
    ``[CLS] a [EOS] b [EOS]`` with segment ids)."""
    texts = [text for q in QUESTIONS for text in q.values()]
    config = TokenizerConfig(kind="wordpiece", vocab_size=120, min_frequency=1)
    return configure_for_task(train_tokenizer(texts, config, NormalizeConfig()), task, max_len)


def span_model(root: Path, max_len: int = 24, stride: int = 6, **overrides) -> Path:
    """An untrained tiny question-answering model (span_extractor with two segments); its meta.json records
    the windows training cut (``max_len``, ``stride``), shorter than the model's 32 positions."""
    tokenizer = pair_tokenizer("span", max_len)
    torch.manual_seed(0)
    config = tiny(
        "span_extractor", vocab_size=tokenizer.get_vocab_size(), segments=2, max_len=32,
        encoder={"n_layers": 1, "n_heads": 2, "d_ff": 32}, **overrides,
    )  # fmt: skip
    meta = {"task": "span", "provenance": {"data_config": {"task": "span", "max_len": max_len, "stride": stride}}}
    return save_model(build_model(config).eval(), root / "qa", tokenizer=tokenizer, meta=meta)


def pair_classifier(root: Path) -> Path:
    """An untrained tiny encoder_classifier with segment embeddings (what pair data such as NLI trains)."""
    tokenizer = pair_tokenizer("classification", 32)
    torch.manual_seed(0)
    config = tiny("encoder_classifier", vocab_size=tokenizer.get_vocab_size(), segments=2, max_len=32, n_classes=2)
    return save_model(build_model(config).eval(), root / "pairs", tokenizer=tokenizer, meta={"labels": ["no", "yes"]})
