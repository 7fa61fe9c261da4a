"""`sora data list | fetch | show`, through the real command entry point."""

from __future__ import annotations

import json

import pytest

from tests.data.util import write_csv
from tests.helpers import run_cli


def test_list_names_every_builtin(capsys):
    code, out, _ = run_cli(capsys, "data", "list", "--json")
    assert code == 0
    names = [d["name"] for d in json.loads(out)]
    assert names == [
        "rotten_tomatoes", "sms_spam", "austen", "bible_en_es", "fashion_mnist", "digits", "spoken_words", "squad"
    ]  # fmt: skip


def test_fetch_and_show_a_builtin(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SORA_HOME", str(tmp_path))
    code, out, _ = run_cli(capsys, "data", "fetch", "digits")
    assert code == 0 and str(tmp_path) in out
    code, out, _ = run_cli(capsys, "data", "show", "digits", "--json")
    info = json.loads(out)
    assert code == 0 and sum(info["splits"].values()) == 1797 and len(info["label_counts"]["train"]) == 10
    code, out, _ = run_cli(capsys, "data", "show", "digits")
    assert code == 0 and "label counts" in out and "train 1,439" in out


def test_show_a_recipe_over_a_users_csv(capsys, tmp_path):
    csv = write_csv(tmp_path / "mine.csv")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: mine\nmodel: {{arch: encoder_classifier, vocab_size: 10, n_classes: 2, encoder: {{}}}}\n"
        f"data:\n  source: {csv}\n  tokenizer: {{kind: char}}\n"
    )
    code, out, _ = run_cli(capsys, "data", "show", str(recipe), "--json", "--examples", "1")
    info = json.loads(out)
    assert code == 0 and info["labels"] == ["neg", "pos"] and len(info["examples"]) == 1


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "data", "fetch", "nope")
    assert code == 2 and "unknown built-in dataset 'nope'" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "data", "fetch")
    assert code == 2 and "--all" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("label,text\npos,a,b\n")
    code, _, err = run_cli(capsys, "data", "show", str(tmp_path / "cfg.yaml"))
    assert code == 2 and "no such file" in err
    (tmp_path / "cfg.yaml").write_text(f"source: {bad}\n")
    code, _, err = run_cli(capsys, "data", "show", str(tmp_path / "cfg.yaml"))
    assert code == 2 and "bad.csv:2: expected 2 fields" in " ".join(err.split())


@pytest.mark.parametrize("command", ["list", "fetch", "show"])
def test_every_command_has_help(capsys, command):
    code, out, _ = run_cli(capsys, "data", command, "--help")
    assert code == 0 and "Usage" in out


def test_config_errors_in_a_recipe_name_file_line_and_key(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ndata:\n  dataset: digits\n  max_lenn: 3\n")
    code, _, err = run_cli(capsys, "data", "show", str(recipe))
    assert code == 2 and "r.yaml:4: data.max_lenn: unknown key" in " ".join(err.split())
