"""``sora run`` ends in OUT/report.html: each stage's figures, the training curves, links and the commands
that use the result; a recipe without a stage gets a page without that stage's section. Two tiny real runs
(one that analyses and compresses, one that only trains) are made once for the module; the export stage is
faked (tracing to ONNX takes seconds, and the page reads only export/meta.json)."""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from scripts.results_table import write_results
from sora.errors import SoraError
from sora.outdir import RUN, describe
from sora.run_report import DATA_YAML, REPORT_HTML, write_run_report
from sora.run_report.curves import training_curves
from sora.run_report.read import read_run_folder
from sora.train.machine import describe_machine
from tests.helpers import TINY_RECIPE_MODEL, run_cli, write_reviews

WORDS = {"pos": "good great fine".split(), "neg": "bad awful dull".split()}
STAGES = {
    "analyze": {"n_examples": 0, "methods": ["gradient"], "max_batches": 1, "batch_size": 8},
    "compress": {"prune": {"heads": 0.5}, "quantize": {}, "latency_batches": [4], "latency_repeats": 1},
}
EXPORT_META = {"export": {"format": "onnx", "precision": "fp32", "graphs": {"model": {"file": "model.onnx"}}}}


def tiny_recipe(root: Path, name: str, stages: dict) -> Path:
    """A recipe of a tiny encoder on 60 five-word reviews: 4 training steps, validated every 2."""
    csv = write_reviews(root / "reviews.csv", WORDS, 60, filler=2)
    recipe = {
        "name": name,
        "data": {
            "source": str(csv),
            "tokenizer": {"kind": "char"},
            "max_len": 32,
            "split": {"validation": 0.2, "test": 0.2, "seed": 0},
        },
        "model": dict(TINY_RECIPE_MODEL),
        "train": {"max_steps": 4, "batch_size": 8, "quiet": True, "log_every": 1, "validate_every_steps": 2},
        **stages,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run_report")
    made = {}
    for name, stages in (("compressed", STAGES), ("train_only", {})):
        made[name] = root / name
        assert run_cli(None, "run", tiny_recipe(root, name, stages), "--out", made[name]).code == 0, name
    return made


def page_of(out: Path) -> str:
    return (out / REPORT_HTML).read_text(encoding="utf-8")


def commands_on(page: str) -> list[list[str]]:
    return [shlex.split(html.unescape(c)) for c in re.findall(r"<tr><td><code>(.*?)</code>", page)]


def test_the_page_shows_each_stage_figures_and_links_to_the_detailed_reports(runs):
    out = runs["compressed"]
    page, report = page_of(out), json.loads((out / "compressed" / "report.json").read_text())
    for stage in ("trained", "pruned", "int8", "pruned + int8"):
        assert f"<td>{stage}</td>" in page
    compressed = report["variants"]["pruned+int8"]
    assert f"{compressed['parameters']:,}" in page and f"{compressed['smaller']:.2f}x" in page
    assert f"{compressed['latency_s']['4'] * 1e3:.1f} ms" in page  # latency from compressed/report.json
    assert "accuracy (test)" in page and "<h2>Training</h2>" in page and "data:image/png;base64," in page
    for link in ("analysis/report.html", "compressed/report.md"):
        assert f'href="{link}"' in page and (out / link).is_file()
    assert "://" not in page and "<script" not in page  # self-contained: nothing fetched


def test_the_printed_commands_run_and_eval_measures_what_the_run_did(runs, capsys, tmp_path):
    out = runs["compressed"]
    commands = commands_on(page_of(out))
    assert [c[:2] for c in commands] == [
        ["sora", "eval"],
        ["sora", "predict"],
        ["sora", "predict"],
        ["sora", "serve"],
        ["tensorboard", "--logdir"],
    ]
    assert commands[2][2] == str(out / "compressed" / "pruned_int8") and commands[3][2] == str(out / "model")
    code, answer, _ = run_cli(capsys, *commands[0][1:], "--json")
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert code == 0 and json.loads(answer)["metrics"]["accuracy"] == test["accuracy"]
    (tmp_path / "texts.txt").write_text("good great fine\nbad awful dull\n")
    mapped = {"texts.txt": str(tmp_path / "texts.txt"), "predictions.jsonl": str(tmp_path / "predictions.jsonl")}
    assert run_cli(capsys, *[mapped.get(a, a) for a in commands[2][1:]]).code == 0
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 2


def test_a_run_without_analysis_compression_or_export_has_no_such_sections(runs):
    page = page_of(runs["train_only"])
    for section in ("Analysis", "Compression", "Export"):
        assert f"<h2>{section}</h2>" not in page
    assert "<td>trained</td>" in page and "<td>pruned</td>" not in page and "latency" not in page
    assert [c[:2] for c in commands_on(page)][1:] == [
        ["sora", "predict"],
        ["sora", "serve"],
        ["tensorboard", "--logdir"],
    ]


def test_an_exported_run_is_served_from_its_export(runs, tmp_path):
    out = shutil.copytree(runs["train_only"], tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints", "best"))
    (out / "export").mkdir()
    (out / "export" / "meta.json").write_text(json.dumps(EXPORT_META))
    page = page_of(write_run_report(out).parent)
    assert "<h2>Export</h2>" in page and 'href="export/"' in page and "model.onnx" in page
    commands = commands_on(page)
    assert commands[1][:3] == ["sora", "predict", str(out / "export")]
    assert commands[2] == ["sora", "serve", str(out / "export")]


def test_the_curves_hold_every_logged_step_and_every_validation(runs):
    curves = training_curves(read_run_folder(runs["train_only"]))
    assert [step for step, _ in curves.train_loss] == [1, 2, 3, 4]  # log_every 1
    assert [step for step, _ in curves.validation_loss] == [2, 4] and curves.metric == "accuracy"


def test_data_yaml_is_the_run_data_section(runs):
    out = runs["train_only"]
    data = yaml.safe_load((out / DATA_YAML).read_text())["data"]
    assert data == json.loads((out / "run.json").read_text())["spec"]["data"]


def test_a_folder_before_training_ends_gets_no_report(tmp_path):
    assert write_run_report(tmp_path) is None and not any(tmp_path.iterdir())


def test_the_report_and_data_yaml_count_as_the_run_own_files(runs, tmp_path):
    """So a later --resume or --force recognises the folder as Sora's run, not as one holding foreign files."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("metrics.json", REPORT_HTML, DATA_YAML):  # no run.json, no checkpoints: known names decide
        shutil.copy(runs["compressed"] / name, folder / name)
    assert describe(folder) is RUN


def test_results_table_has_one_row_per_run_and_names_the_machine(runs, tmp_path):
    out = write_results([runs["compressed"].parent], tmp_path / "results.md")  # a folder of runs
    text = out.read_text()
    assert text.startswith("# Results") and "Generated by `python scripts/results_table.py`" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| recipe")]
    assert [row.split(" | ")[0] for row in rows] == ["| compressed", "| train_only"]
    compressed = read_run_folder(runs["compressed"])
    assert f"{compressed.score:.4f}" in rows[0] and f"{compressed.compressed['smaller']:.2f}x" in rows[0]
    assert rows[1].endswith("| – | – | – |")  # no compression: no compressed figures
    assert f"{describe_machine()['cores']} cores, torch {torch.__version__}" in text


def test_results_table_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(SoraError, match="no run folders"):
        write_results([tmp_path], tmp_path / "results.md")
    assert not (tmp_path / "results.md").exists()


def test_results_table_lists_extra_test_sets_and_groups_in_the_headline_metric(runs, tmp_path):
    run = tmp_path / "train_only"
    shutil.copytree(runs["train_only"], run)
    metrics = json.loads((run / "metrics.json").read_text())
    metric = read_run_folder(run).metric
    metrics["test_extra"] = {"nyt": {metric: 0.625, "loss": 1.0}, "reddit": {metric: 0.5}}
    metrics["test_by"] = {"snr": {"0": {metric: 0.25}, "clean": {metric: 0.75}}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    text = write_results([run], tmp_path / "results.md").read_text()
    assert f"- train_only, other test sets ({metric}): nyt 0.6250, reddit 0.5000" in text
    assert f"- train_only, test by snr ({metric}): 0 0.2500, clean 0.7500" in text
    assert "Other test sets" not in write_results([runs["compressed"]], tmp_path / "plain.md").read_text()
