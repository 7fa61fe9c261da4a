"""``sora train``, ``sora eval`` and ``sora generate`` end to end on small local files."""

import json
import random

import pytest
import yaml

from sora.models import load_meta
from tests.helpers import run_cli

GOOD = ["great", "lovely", "superb", "fine", "moving", "funny"]
BAD = ["awful", "dull", "boring", "weak", "messy", "flat"]


def write_reviews(path, n=160):
    rng = random.Random(0)
    lines = ["text,label"]
    for i in range(n):
        label = i % 2
        words = rng.sample(GOOD if label else BAD, 2) + rng.sample(["a", "film", "plot", "the", "story"], 2)
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{'fresh' if label else 'rotten'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_recipe(path, data, model, train):
    path.write_text(yaml.safe_dump({"name": path.stem, "model": model, "data": data, "train": train}))
    return path


@pytest.fixture
def classifier_recipe(tmp_path):
    csv = write_reviews(tmp_path / "reviews.csv")
    data = {
        "source": str(csv),
        "tokenizer": {"kind": "wordpiece", "vocab_size": 100, "min_frequency": 1},
        "split": {"validation": 0.2, "test": 0.2, "seed": 0},
    }
    model = {
        "arch": "encoder_classifier",
        "vocab_size": 100,
        "d_model": 32,
        "max_len": 32,
        "dropout": 0.0,
        "encoder": {"n_layers": 1, "n_heads": 2, "d_ff": 64},
        "n_classes": 2,
        "pooling": "mean",
    }
    train = {"max_steps": 12, "batch_size": 16, "lr": 5e-3, "quiet": True, "validate_every_steps": 6}
    return write_recipe(tmp_path / "reviews.yaml", data, model, train)


def test_train_then_eval_gives_the_same_test_metrics(tmp_path, capsys, classifier_recipe):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", classifier_recipe, "--out", out)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9  # the words give the label away
    assert metrics["baseline"]["accuracy"] >= 0.9 and "tfidf" in metrics["baseline"]["method"]
    assert metrics["train"]["steps"] == 12 and metrics["best"]["metric"] == "accuracy"
    assert [r["step"] for r in metrics["history"]] == [6, 12]
    meta = load_meta(out / "model")
    assert meta["labels"] == ["fresh", "rotten"] and meta["metrics"]["test"] == metrics["test"]
    assert meta["provenance"]["train_config"]["max_steps"] == 12 and meta["provenance"]["dataset"]
    assert (out / "model" / "tokenizer.json").is_file() and (out / "best").is_dir()

    code, stdout, err = run_cli(capsys, "eval", out / "model", "--data", classifier_recipe, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["split"] == "test" and result["metrics"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    code, stdout, _ = run_cli(capsys, "eval", out / "model", "--data", classifier_recipe, "--split", "validation")
    assert code == 0 and "accuracy" in stdout and "macro_f1" in stdout


def test_resume_from_the_command_line_continues_where_it_stopped(tmp_path, capsys, classifier_recipe):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", classifier_recipe, "--out", out, "--set", "train.max_steps=6")[0] == 0
    code, _, err = run_cli(
        capsys,
        "train",
        classifier_recipe,
        "--out",
        out,
        "--resume",
        "--set",
        "train.max_steps=9",
        "--set",
        "train.quiet=false",
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 9 and [r["step"] for r in metrics["history"]] == [6, 9]


def test_language_model_trains_and_generates_text(tmp_path, capsys):
    text = tmp_path / "book.txt"
    text.write_text("the cat sat on the mat. the dog sat on the log.\n" * 40)
    data = {
        "source": str(text),
        "format": "text",
        "task": "lm",
        "tokenizer": {"kind": "char", "min_frequency": 1},
        "block_size": 24,
        "split": {"validation": 0.1, "test": 0.0},
    }
    model = {
        "arch": "decoder_lm",
        "vocab_size": 40,
        "d_model": 32,
        "max_len": 32,
        "dropout": 0.0,
        "decoder": {"n_layers": 1, "n_heads": 2, "d_ff": 64},
        "position": "rotary",
    }
    recipe = write_recipe(
        tmp_path / "lm.yaml", data, model, {"max_steps": 30, "batch_size": 8, "lr": 1e-2, "quiet": True}
    )
    out = tmp_path / "lm"
    code, _, err = run_cli(capsys, "train", recipe, "--out", out)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test" not in metrics and metrics["validation"]["bits_per_char"] < 3.0
    code, stdout, err = run_cli(
        capsys,
        "generate",
        out / "model",
        "--prompt",
        "the cat",
        "--max-new-tokens",
        "20",
        "--seed",
        "0",
        "--samples",
        "2",
    )
    assert code == 0, err
    samples = [s for s in stdout.split("\n") if s.startswith("the cat")]
    assert len(samples) == 2 and all(len(s) > len("the cat") for s in samples)


def test_bad_train_key_is_one_line_and_writes_nothing(tmp_path, capsys, classifier_recipe):
    out = tmp_path / "never"
    code, stdout, err = run_cli(capsys, "train", classifier_recipe, "--out", out, "--set", "train.optimizer=adam")
    assert code == 2 and "Traceback" not in err + stdout  # main() turned the error into one message
    assert f"{classifier_recipe}" in err and "train.optimizer" in err and "'adamw' or 'sgd'" in err
    assert not out.exists()


def test_eval_and_generate_refuse_what_they_cannot_use(tmp_path, capsys, classifier_recipe):
    code, _, err = run_cli(capsys, "eval", tmp_path, "--data", classifier_recipe)
    assert code == 2 and "not a model folder" in err
    out = tmp_path / "run"
    assert run_cli(capsys, "train", classifier_recipe, "--out", out, "--set", "train.max_steps=2")[0] == 0
    code, _, err = run_cli(capsys, "generate", out / "model", "--prompt", "hi")
    assert code == 2 and "decoder_lm or seq2seq" in err
    code, _, err = run_cli(capsys, "eval", out / "model", "--data", classifier_recipe, "--split", "dev")
    assert code == 2 and "no split 'dev'" in err


@pytest.mark.parametrize("command", ["train", "eval", "generate"])
def test_commands_have_help(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "Usage" in out
