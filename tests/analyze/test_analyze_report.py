import json
import re
from pathlib import Path

import pytest

from sora.analyze import AnalyzeConfig, analyze_model
from sora.analyze.pruning import gates_off, prunable_fraction, removal_counts
from sora.analyze.stage import measure
from sora.errors import SoraError
from tests.analyze.batches import ASSEMBLIES, batch_for, model_for, one_head_model

QUICK = {"pruning_seeds": 1, "n_examples": 1}


def referenced_files(folder: Path) -> list[str]:
    return re.findall(r'src="([^"]+)"', (folder / "report.html").read_text())


@pytest.mark.parametrize("name", list(ASSEMBLIES))
def test_every_assembly_is_measured_by_every_method(name):
    model, task = model_for(name)
    config = AnalyzeConfig(**QUICK)
    result, extras = measure(model, [batch_for(name, seed=s) for s in range(2)], task, config)
    json.dumps(result, allow_nan=False, default=lambda x: x.tolist())  # JSON-ready
    heads = result["heads"]
    assert len(heads) == sum(m.n_heads for m in model.modules() if hasattr(m, "head_gate"))
    assert all(r["type"] and r["gradient"] is not None and "ablation" in r for r in heads)
    assert set(result["pruning"]["at"]) == {"25%", "50%", "75%"}
    assert result["layers"] and result["neurons"] and result["positions"] and extras["examples"]


@pytest.mark.parametrize("name", ["text_classifier", "seq2seq", "ctc"])
def test_report_references_only_files_that_exist(tmp_path, name):
    model, task = model_for(name)
    out = tmp_path / "analysis"
    result = analyze_model(model, [batch_for(name, seed=s) for s in range(2)], QUICK, out, task=task)
    data = json.loads((out / "analysis.json").read_text())
    assert data["task"] == task and data["summary"]["most_important_heads"] == result["summary"]["most_important_heads"]
    files = referenced_files(out)
    assert files and all((out / f).is_file() and "/" not in f for f in files)
    assert {"importance_heatmap.png", "pruning_curve.png", "neurons.png", "particle_graph.png"} <= set(files)
    html = (out / "report.html").read_text()
    assert "<pre class='mermaid'>flowchart TD" in html and "<script" not in html and "http" not in html
    if name == "seq2seq":
        assert any(r["name"].startswith("decoder.layers.0.cross_attn.head") for r in data["heads"])
        assert len(data["figures"]["attention"][0]["files"]) == 3  # encoder self, decoder self, cross


def test_pruning_curve_on_the_one_head_model_beats_random_order(tmp_path):
    model, batches = one_head_model()
    result = analyze_model(model, batches, {"methods": ["gradient", "pruning"], "n_examples": 1}, tmp_path / "a")
    at = result["pruning"]["at"]
    for mark in ("50%", "75%"):  # the carrier survives in few random orders: random sits near reverse
        assert at[mark]["importance"] > at[mark]["random"] + 0.1 and at[mark]["random"] >= at[mark]["reverse"]
    assert result["pruning"]["order"][-1] == "layers.0.attn.head.2"  # removed last
    assert result["pruning"]["prunable_within_1_point"]["importance"] >= 0.5


def test_gates_come_back_and_counts_include_the_marks():
    model, _ = model_for("text_classifier")
    with gates_off(model, ["layers.0.attn.head.1", "layers.1.attn.head.3"]):
        assert model.layers[0].attn.head_gate.tolist() == [1, 0, 1, 1]
    assert model.layers[0].attn.head_gate.tolist() == [1, 1, 1, 1]
    assert removal_counts(8, None) == list(range(9))
    assert {25, 50, 75} <= set(removal_counts(100, 10)) and len(removal_counts(100, 10)) == 13
    assert prunable_fraction([0, 0.25, 0.5, 0.75], [0.9, 0.895, 0.85, 0.9]) == 0.25


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path):
    # (an --out holding other files is refused by `sora analyze`: tests/reliability/test_out_folders.py)
    model, task = model_for("text_classifier")
    with pytest.raises(SoraError, match="missing labels"):
        analyze_model(model, [{"inputs": batch_for("text_classifier")["inputs"]}], QUICK, tmp_path / "x", task=task)
    with pytest.raises(SoraError, match="split is empty"):
        analyze_model(model, [], QUICK, tmp_path / "y")
    with pytest.raises(Exception, match="ablation"):
        AnalyzeConfig(ablation="shuffle")
    assert not list(tmp_path.iterdir())
