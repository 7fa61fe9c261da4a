"""``sora prune``, ``sora quantize`` and ``sora compress`` from the command line."""

import csv
import json
import random

import pytest
import torch

from sora.configio import load
from sora.data import DataConfig, prepare_data
from sora.models import build_model, load_meta, load_model, save_model
from tests.helpers import fit_classifier, run_cli, tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A CSV dataset, its data YAML, and a tiny classifier trained on it (with its tokenizer)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("cli")
    rng = random.Random(0)
    pos, neg, filler = "good great fine superb".split(), "bad awful poor dull".split(), "the film was a it".split()
    with open(root / "reviews.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(160):
            label = rng.choice(["pos", "neg"])
            words = rng.choices(filler, k=4) + rng.choices(pos if label == "pos" else neg, k=2)
            rng.shuffle(words)
            w.writerow([" ".join(words), label])
    (root / "data.yaml").write_text(
        f"source: {root / 'reviews.csv'}\ncolumns: {{text: text, label: label}}\n"
        "tokenizer: {kind: char}\nmax_len: 64\n"
    )
    data = prepare_data(load(DataConfig, root / "data.yaml"))
    model = build_model(tiny(vocab_size=data.vocab_size, n_classes=2, pooling="mean"))
    fit_classifier(model, data, epochs=3)
    save_model(model.eval(), root / "model", tokenizer=data.tokenizer, meta={"labels": data.labels})
    return root


def test_prune_by_names_then_reload(capsys, folder, tmp_path):
    code, out, err = run_cli(
        capsys,
        "prune",
        folder / "model",
        "--out",
        tmp_path / "p",
        "--heads",
        "layers.0.attn.head.1, layers.1.attn.head.0,layers.1.ffn.neuron.3",
    )
    assert code == 0, err
    assert "heads 8 -> 6" in out
    pruned = load_model(tmp_path / "p")
    assert pruned.config.encoder.n_heads == 3 and pruned.config.encoder.d_ff == [64, 63]
    assert load_meta(tmp_path / "p")["pruning"]["removed"][0] == "layers.0.attn.head.1"
    assert (tmp_path / "p" / "tokenizer.json").is_file()


def test_prune_by_fraction_per_layer_and_by_plan(capsys, folder, tmp_path):
    code, out, err = run_cli(
        capsys, "prune", folder / "model", "--out", tmp_path / "p", "--fraction", "0.5", "--per-layer"
    )
    assert code == 0, err
    assert "weight magnitudes" in out and load_model(tmp_path / "p").config.encoder.n_heads == 2
    (tmp_path / "plan.yaml").write_text("remove: [layers.1]\nneurons: 0.5\nscope: per_layer\nsparsity: 0.3\n")
    code, out, err = run_cli(
        capsys, "prune", folder / "model", "--out", tmp_path / "q", "--plan", tmp_path / "plan.yaml"
    )
    assert code == 0, err
    config = load_model(tmp_path / "q").config.encoder
    assert config.n_layers == 1 and config.d_ff == 32
    assert "block weights zero: 30.0%" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--heads", "layers.0.attn.head.7"], "--heads: unknown particle 'layers.0.attn.head.7'"),
        (["--fraction", "1.5"], "options: heads: .*150% is over 100% of the heads"),
        ([], "nothing to prune"),
    ],
)
def test_bad_prune_requests_fail_clearly(capsys, folder, tmp_path, args, message):
    import re

    code, out, err = run_cli(capsys, "prune", folder / "model", "--out", tmp_path / "p", *args)
    assert code == 2 and re.search(message, err), err
    assert "Traceback" not in err and not (tmp_path / "p").exists()


def test_quantize_writes_an_int8_folder(capsys, folder, tmp_path):
    code, out, err = run_cli(
        capsys, "quantize", folder / "model", "--out", tmp_path / "q", "--min-weights", "0", "--min-side", "0"
    )
    assert code == 0, err
    assert "x smaller" in out
    assert "-bit activations" in out  # which kernel this CPU runs
    q = load_model(tmp_path / "q")
    assert q.config.quantization["method"] == "int8_dynamic" and len(q.config.quantization["linear"]) == 13
    code, _, err = run_cli(capsys, "prune", tmp_path / "q", "--out", tmp_path / "p", "--fraction", "0.5")
    assert code == 2 and "is quantized" in err


def test_quantize_with_data_gives_the_sensitive_linears_row_scales_or_per_token_for_all(capsys, folder, tmp_path):
    common = ("--min-weights", "0", "--min-side", "0")
    code, out, err = run_cli(
        capsys,
        "quantize",
        folder / "model",
        "--out",
        tmp_path / "s",
        "--data",
        folder / "data.yaml",
        "--sensitive",
        "2",
        *common,
    )
    assert code == 0, err
    info = load_model(tmp_path / "s").config.quantization
    assert len(info["linear_row_scaled"]) == 2 and set(info["linear_row_scaled"]) <= set(info["linear"])
    assert "per-row activation scales for" in out
    code, out, err = run_cli(
        capsys, "quantize", folder / "model", "--out", tmp_path / "r", "--activations", "row", *common
    )
    assert code == 0, err
    info = load_model(tmp_path / "r").config.quantization
    assert info["linear_row_scaled"] == info["linear"]
    code, _, err = run_cli(capsys, "quantize", folder / "model", "--out", tmp_path / "x", "--sensitive-as", "int4")
    assert code == 2 and "sensitive_as" in err and "Traceback" not in err and not (tmp_path / "x").exists()


def test_compress_from_a_data_yaml(capsys, folder, tmp_path):
    code, out, err = run_cli(
        capsys,
        "compress",
        folder / "model",
        "--data",
        folder / "data.yaml",
        "--out",
        tmp_path / "c",
        "--heads",
        "0.5",
        "--finetune",
        "0.5",
        "--lora",
        "--hidden",
        "0.5",
        "--set",
        "latency_repeats=2",
        "--set",
        "quantize.min_weights=0",
        "--set",
        "quantize.min_side=0",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert report["variants"]["pruned"]["heads"] == 4
    assert report["config"]["finetune"]["lora"]["rank"] == 8
    assert report["config"]["finetune"]["hidden"] == 0.5
    assert "| pruned+int8 |" in out
    code, _, err = run_cli(
        capsys,
        "compress",
        folder / "model",
        "--data",
        folder / "data.yaml",
        "--out",
        tmp_path / "d",
        "--set",
        "prune.scope=sideways",
    )
    assert code == 2 and "prune.scope" in err and not (tmp_path / "d").exists()
