"""Tiny model folders of every assembly, each naming the data it was made from (meta.json
``provenance.data_config``, as training writes it), so an export checks them on that data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sora.compress.vocabulary import prune_vocabulary
from sora.data import prepare_data
from sora.models import build_model, save_model
from tests.deploy import tiny_folders
from tests.deploy.tiny_folders import PAIRS, wav_folder
from tests.helpers import fit_classifier, tiny, write_reviews

WORDS = {"pos": "fine great lovely warm smart joy".split(), "neg": "dull boring flat tedious awful weak".split()}
SPLIT = {"validation": 0.2, "test": 0.1}


def save_with_data(folder: Path, data, model: torch.nn.Module, tokenizer=None) -> Path:
    meta = {"labels": data.labels, "provenance": {"data_config": data.config.model_dump(mode="json")}}
    return save_model(model.eval(), folder, tokenizer=tokenizer or data.tokenizer, meta=meta)


def build(data, arch: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny(arch, **{**data.model_fields(), **overrides})).eval()


def reviews(root: Path):
    csv = write_reviews(root / "reviews.csv", WORDS, 200, filler=2)
    tokenizer = {"kind": "wordpiece", "vocab_size": 120, "min_frequency": 1}
    return prepare_data({"source": str(csv), "tokenizer": tokenizer, "split": SPLIT})


def trained_classifier(root: Path) -> Path:
    """A text classifier trained for a few epochs: its logits mean something, so int8 agreement does too."""
    data = reviews(root)
    model = fit_classifier(build(data, "encoder_classifier", d_model=48), data, epochs=3)
    return save_with_data(root / "trained", data, model)


def vocabulary_pruned(root: Path) -> Path:
    data = reviews(root)
    model = build(data, "encoder_classifier", pooling="mean")
    pruned = prune_vocabulary(model, data.tokenizer, data.texts("train"))
    assert pruned.model.config.vocab_size < model.config.vocab_size
    return save_with_data(root / "vocab_pruned", data, pruned.model, pruned.tokenizer)


def image_classifier(root: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    np.savez(root / "images.npz", image=pixels, label=np.arange(40) % 3)
    data = prepare_data({"source": str(root / "images.npz"), "split": SPLIT})
    image = {"size": 8, "channels": 1, "patch": 4, "stem": "conv"}  # tiny_folders' ViT has the plain patch stem
    return save_with_data(
        root / "vision", data, build(data, "encoder_classifier", input="image", image=image, norm_position="post")
    )


def audio_model(root: Path, task: str, **overrides) -> Path:
    """A keyword classifier (task "classification") or a CTC recogniser (task "ctc") on tones."""
    source = wav_folder(root / task, with_transcripts=task == "ctc")
    data = prepare_data({"source": str(source), "task": task, "n_mels": 16, "split": {"validation": 0.3, "test": 0.0}})
    arch = "encoder_classifier" if task == "classification" else "token_classifier"
    stem = "conv" if task == "ctc" else "patch"  # export parity covers both audio stems
    model = build(data, arch, input="audio", audio={"n_mels": 16, "patch_frames": 4, "stem": stem}, **overrides)
    return save_with_data(root / f"{task}_model", data, model)


def char_lm(root: Path, **overrides) -> Path:
    return tiny_folders.char_lm(root, **{"max_len": 32, **overrides})


def translator(root: Path, **overrides) -> Path:
    (root / "pairs.csv").write_text("source,target\n" + "".join(f"{s},{t}\n" for s, t in PAIRS * 4))
    data = prepare_data(
        {
            "source": str(root / "pairs.csv"),
            "task": "seq2seq",
            "tokenizer": {"kind": "char", "min_frequency": 1},
            "split": SPLIT,
        }
    )
    return save_with_data(root / "translator", data, build(data, "seq2seq", max_len=32, **overrides))


def text_tagger(root: Path, **overrides) -> Path:
    """A text token classifier: no built-in data tags text, so it names none and is checked on generated ids."""
    torch.manual_seed(0)
    return save_model(build_model(tiny("token_classifier", **overrides)).eval(), root / "tagger")
