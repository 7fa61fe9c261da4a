"""``sora export``: writes an export folder and says how to serve it; --out follows the rule every command
follows; what cannot be exported is one line, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import sora.deploy.export as export_module
from sora.compress import quantize_model, save_quantized
from sora.deploy import read_export
from sora.models import build_model, save_model
from sora.outdir import EXPORT, describe
from tests.helpers import run_cli, tiny


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(build_model(tiny()).eval(), tmp_path_factory.mktemp("cli") / "model")


@pytest.fixture(scope="module")
def first_export(model_dir) -> Path:
    """One real export through the command, shared: the tests after it copy its graph instead of tracing."""
    out = model_dir.parent / "exported"
    answer = run_cli(None, "export", model_dir, "--format", "onnx", "--out", out)
    assert answer.code == 0
    return out


@pytest.fixture
def quick(monkeypatch, first_export):
    """Exports copy the first export's graph (the same model) instead of tracing it again."""

    def export_graph(graph, path: Path) -> float:
        shutil.copyfile(first_export / graph.file, path)
        return 0.0

    monkeypatch.setattr(export_module, "export_graph", export_graph)


def test_export_writes_an_export_folder_and_prints_the_serve_line(capsys, model_dir, tmp_path):
    out = tmp_path / "onnx"
    answer = run_cli(capsys, "export", model_dir, "--out", out)
    assert answer.code == 0, answer.stderr
    assert "parity inputs: generated (the folder names no data" in answer.out
    assert "fp32 parity: model max |onnxruntime - torch|" in answer.out
    assert f"serve it: sora serve {out}" in answer.out
    export = read_export(out)
    assert export["precision"] == "fp32" and export["source"] == str(model_dir)
    assert describe(out) is EXPORT and sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "meta.json",
        "model.onnx",
        "model.safetensors",
    ]


def test_int8_replaces_its_own_earlier_export_and_prints_agreement(capsys, model_dir, first_export, quick, tmp_path):
    out = shutil.copytree(first_export, tmp_path / "onnx")
    answer = run_cli(capsys, "export", model_dir, "--int8", "--out", out)
    assert answer.code == 0, answer.stderr
    assert "replacing an ONNX export Sora wrote there earlier" in answer.err
    assert "int8 against fp32 torch: label agreement" in answer.out and "(int8, opset" in answer.out
    assert json.loads((out / "meta.json").read_text())["export"]["precision"] == "int8"


def test_out_holding_something_else_is_refused_unless_forced(capsys, model_dir, quick, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert (
        "holds files Sora did not write (e.g. notes.txt)"
        in run_cli(capsys, "export", model_dir, "--out", foreign).error()
    )
    assert "which this command reads" in run_cli(capsys, "export", model_dir, "--out", model_dir).error()
    other_model = shutil.copytree(model_dir, tmp_path / "other_model")
    assert (
        "is a model folder Sora wrote, not an ONNX export"
        in run_cli(capsys, "export", model_dir, "--out", other_model).error()
    )
    assert run_cli(capsys, "export", model_dir, "--out", foreign, "--force").code == 0
    assert not (foreign / "notes.txt").exists() and read_export(foreign)["precision"] == "fp32"


def test_what_cannot_be_exported_is_one_line(capsys, model_dir, tmp_path):
    assert (
        "--format tflite: unknown export format"
        in run_cli(capsys, "export", model_dir, "--format", "tflite", "--out", tmp_path / "o").error()
    )
    assert "not a model folder" in run_cli(capsys, "export", tmp_path / "nowhere", "--out", tmp_path / "o").error()
    int8 = save_quantized(quantize_model(build_model(tiny()).eval()), tmp_path / "int8")
    message = run_cli(capsys, "export", int8, "--out", tmp_path / "o").error()
    assert "torch int8 weights" in message and "--int8" in message
    assert not (tmp_path / "o").exists()
