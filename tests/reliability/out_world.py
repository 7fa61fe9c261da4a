"""What the ``--out`` tests share: a tiny model, its data, and one output of every kind.

``world`` (a module fixture) holds a BERT-shaped classifier (so that ``hf export`` accepts it), a CSV
dataset with its data config, a light analyze recipe, compress config and train recipe, and
``samples``: one folder of every kind of Sora output, written by the real commands, to copy.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

from sora.configio import load
from sora.data import DataConfig, prepare_data
from tests.helpers import TINY_RECIPE_MODEL, run_cli, save_tiny, write_reviews

WORDS = {"pos": "good great fine".split(), "neg": "bad awful dull".split()}


@dataclass
class World:
    root: Path
    model: Path
    data: Path
    analyze: Path
    compress: Path
    recipe: Path
    samples: dict[str, Path] = field(default_factory=dict)

    def command(self, name: str) -> list:
        """The arguments of command ``name`` (before ``--out``), on this world's inputs."""
        return {
            "prune": ["prune", self.model, "--heads", "layers.0.attn.head.1"],
            "quantize": ["quantize", self.model],
            "hf import": ["hf", "import", self.samples["hf"], "--no-verify"],
            "hf export": ["hf", "export", self.model, "--no-verify"],
            "analyze": ["analyze", self.model, "--data", self.analyze],
            "compress": ["compress", self.model, "--data", self.data, "--config", self.compress],
            "train": ["train", self.recipe],
            "run": ["run", self.recipe],
        }[name]


KIND_OF = {
    "prune": "model",
    "quantize": "model",
    "hf import": "model",
    "hf export": "hf",
    "analyze": "analysis",
    "compress": "compress",
    "train": "run",
    "run": "run",
}


def build_world(root: Path) -> World:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    write_reviews(root / "reviews.csv", WORDS, 60, filler=3)
    data = {
        "source": str(root / "reviews.csv"),
        "columns": {"text": "text", "label": "label"},
        "tokenizer": {"kind": "char"},
        "max_len": 32,
        "split": {"validation": 0.2, "test": 0.2, "seed": 0},
    }
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    (root / "analyze.yaml").write_text(
        yaml.safe_dump(
            {
                "data": data,
                "analyze": {
                    "n_examples": 0,
                    "methods": ["gradient"],
                    "max_batches": 1,
                    "batch_size": 4,
                    "split": "train",
                },
            }
        )
    )
    (root / "compress.yaml").write_text(
        yaml.safe_dump(
            {
                "prune": {"remove": ["layers.0.attn.head.1"]},
                "quantize": None,
                "latency_batches": [4],
                "latency_repeats": 1,
            }
        )
    )
    model = dict(TINY_RECIPE_MODEL)
    (root / "recipe.yaml").write_text(
        yaml.safe_dump(
            {"name": "tiny", "data": data, "model": model, "train": {"max_steps": 2, "batch_size": 8, "quiet": True}}
        )
    )
    prepared = prepare_data(load(DataConfig, root / "data.yaml"))
    save_tiny(
        root / "model",
        prepared,
        max_len=32,
        norm_position="post",
        embed_norm=True,
        pooling="cls",
        pooler=True,
        activation="gelu_tanh",
    )  # BERT-shaped, so that `hf export` accepts it
    world = World(
        root, root / "model", root / "data.yaml", root / "analyze.yaml", root / "compress.yaml", root / "recipe.yaml"
    )
    samples = root / "samples"
    world.samples["hf"] = samples / "hf"  # first: `hf import` reads it
    for name in ("hf export", "prune", "analyze", "compress", "train"):
        kind = KIND_OF[name]
        world.samples[kind] = samples / kind
        assert run_cli(None, *world.command(name), "--out", world.samples[kind]).code == 0, name
    world.samples["checkpoint"] = _copy(next((samples / "run" / "checkpoints").iterdir()), samples / "checkpoint")
    world.samples["hf_foreign"] = _unsigned(_copy(samples / "hf", samples / "hf_foreign"))
    return world


def _copy(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, symlinks=True)
    return dest


def _unsigned(folder: Path) -> Path:
    """The same Hugging Face folder as if someone else wrote it: weights without Sora's mark."""
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    save_file(load_file(weights), str(weights), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("out_world"))
