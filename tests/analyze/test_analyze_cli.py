import json

import pytest
import torch
from safetensors.torch import save_file

from sora.models import build_model, save_model
from tests.helpers import run_cli, tiny


@pytest.fixture
def text_model_and_data(tmp_path):
    """A tiny classifier saved with the tokenizer its (tiny CSV) data was prepared with."""
    from sora.data import prepare_data

    rows = [
        f"the {w} film was {w},{'pos' if w in ('good', 'great') else 'neg'}"
        for i in range(80)
        for w in (("good", "bad", "great", "dull")[i % 4],)
    ]
    (tmp_path / "reviews.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: t\nmodel: {{arch: encoder_classifier, vocab_size: 50, n_classes: 2}}\n"
        f"data:\n  source: {tmp_path / 'reviews.csv'}\n  columns: {{text: text, label: label}}\n"
        "  tokenizer: {kind: wordpiece, vocab_size: 40, min_frequency: 1}\n"
        "  duplicates: keep\n"  # four reviews, twenty times each: grouped, they would fill one split
        "analyze: {max_batches: 2, batch_size: 4, pruning_seeds: 1, methods: [gradient, attention, pruning]}\n"
    )
    data = prepare_data(
        {
            "source": str(tmp_path / "reviews.csv"),
            "columns": {"text": "text", "label": "label"},
            "tokenizer": {"kind": "wordpiece", "vocab_size": 40, "min_frequency": 1},
        }
    )
    model = build_model(tiny(**data.model_fields()))
    save_model(model, tmp_path / "model", tokenizer=data.tokenizer, meta={"labels": data.labels})
    return tmp_path / "model", recipe


def test_analyze_a_saved_model_on_a_recipe(tmp_path, capsys, text_model_and_data):
    model_dir, recipe = text_model_and_data
    code, out, err = run_cli(
        capsys, "analyze", model_dir, "--data", recipe, "--out", tmp_path / "an", "--example", "the good film"
    )
    assert code == 0, err
    assert out.strip().endswith("report.html") and "25% of heads removed" in err
    result = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert result["methods"] == ["gradient", "attention", "pruning"]  # the recipe's analyze section
    assert result["data"] == {"batches": 2, "examples": 8, "split": "validation", "check_examples": 8}
    assert "the good film" in result["figures"]["attention"][0]["caption"]


def test_analyze_on_a_tensor_file(tmp_path, capsys):
    model = build_model(tiny(input="image", image={"size": 8, "patch": 4}))
    save_model(model, tmp_path / "model")
    save_file(
        {"inputs": torch.randn(6, 1, 8, 8), "labels": torch.randint(0, 3, (6,))}, str(tmp_path / "batches.safetensors")
    )
    code, _, err = run_cli(
        capsys,
        "analyze",
        tmp_path / "model",
        "--data",
        tmp_path / "batches.safetensors",
        "--out",
        tmp_path / "an",
        "--batch-size",
        "3",
        "--methods",
        "gradient,ablation,attention",
    )
    assert code == 0, err
    result = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert result["task"] == "classification" and result["data"]["batches"] == 2 and "pruning" not in result


def test_bad_input_is_a_clear_message_without_traceback(tmp_path, capsys):
    model = build_model(tiny())
    save_model(model, tmp_path / "model")
    cases = [
        (["--data", tmp_path / "missing.yaml"], "no such data file"),
        (["--data", tmp_path / "model" / "config.json", "--methods", "gradient,magic"], "analyze.methods: item 1"),
        (["--data", tmp_path / "model" / "config.json"], "arch: unknown key"),  # a model config is not a data config
    ]
    for args, message in cases:
        code, _, err = run_cli(capsys, "analyze", tmp_path / "model", *args, "--out", tmp_path / "an")
        err = " ".join(err.split())
        assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "an").exists()


def test_help(capsys):
    code, out, _ = run_cli(capsys, "analyze", "--help")
    assert code == 0 and "--max-batches" in out and "--data" in out
