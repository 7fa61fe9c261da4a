import json
import subprocess
import sys

import pytest

from tests.helpers import run_cli

RECIPE = "recipes/sentiment.yaml"


def test_inspect_recipe_lists_every_head(capsys):
    code, out, _ = run_cli(capsys, "inspect", RECIPE, "--json")
    assert code == 0
    data = json.loads(out)
    names = [p["name"] for p in data["particles"]]
    assert "layers.1.attn.head.3" in names and "embed.tokens" in names and "layers.0.ffn" in names
    assert data["summary"]["heads"] == 8
    assert data["summary"]["parameters"] == sum(p["params"] for p in data["particles"] if p["kind"] != "head")


def test_inspect_mermaid_and_table(capsys):
    code, out, _ = run_cli(capsys, "inspect", RECIPE, "--mermaid")
    assert code == 0 and out.startswith("flowchart TD") and 'L1["layers.1"]' in out
    code, out, _ = run_cli(capsys, "inspect", RECIPE)
    assert code == 0 and "layers.0.attn.head.0" in out and "total:" in out


def test_inspect_model_folder(tmp_path, capsys):
    code, _, _ = run_cli(
        capsys, "run", RECIPE, "--out", str(tmp_path), "--profile", "quick", "--set", "model.d_model=64"
    )
    assert code == 0
    code, out, _ = run_cli(capsys, "inspect", str(tmp_path / "model"), "--json")
    assert code == 0 and json.loads(out)["summary"]["heads"] == 8


def test_bad_override_is_one_clear_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sora", "run", RECIPE, "--out", str(tmp_path), "--set", "model.encoder.n_layers=-1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "model.encoder.n_layers" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["run", "inspect"])
def test_every_command_has_help(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "Usage" in out


def test_inspect_points_a_hugging_face_folder_to_hf_import(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    code, _, err = run_cli(capsys, "inspect", str(tmp_path))
    assert code == 2 and "sora hf import" in err


@pytest.mark.parametrize("args, says", [(["evaluate"], "No such command"), (["inspect", "--bogus"], "--bogus")])
def test_usage_errors_are_messages_not_tracebacks(capsys, args, says):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and says in err and "Traceback" not in err + out
