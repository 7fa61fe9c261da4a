"""`sora run` run again: finished stages are skipped, an interrupted run continues, a broken recipe is refused.

One tiny recipe (a 1-layer classifier on 60 generated reviews, every stage) runs once per module; each test
works on a copy of that run (mtimes kept), so a test costs one rerun of a few seconds at most.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from sora.stages import STAGES_FILE
from tests.helpers import TINY_RECIPE_MODEL, run_cli, snapshot, write_reviews

WORDS = {"pos": "good great fine".split(), "neg": "bad awful dull".split()}
STAGES = ("train", "analyze", "compress", "export")
OUTPUTS = ("model", "best", "checkpoints", "metrics.json", "analysis", "compressed", "export", STAGES_FILE)


def tiny_recipe(root: Path, **changes) -> dict:
    data = {
        "source": str(root / "reviews.csv"),
        "tokenizer": {"kind": "char"},
        "max_len": 32,
        "split": {"validation": 0.2, "test": 0.2, "seed": 0},
    }
    model = dict(TINY_RECIPE_MODEL)
    recipe = {
        "name": "tiny-stages",
        "data": data,
        "model": model,
        "train": {
            "max_steps": 4,
            "batch_size": 8,
            "quiet": True,
            "threads": 1,
            "checkpoint_every_steps": 2,
            "log_every": 1,
        },
        "analyze": {"n_examples": 0, "methods": ["gradient"], "max_batches": 1, "batch_size": 4, "split": "train"},
        "compress": {
            "prune": {"heads": 0.5},
            "quantize": None,
            "latency_batches": [4],
            "latency_repeats": 1,
            "importance_batches": 1,
        },
        "export": {"model": "pruned"},  # export reads the pruned model: it follows compress
        "profiles": {"quick": {"train.max_steps": 2}},
    }
    return {**recipe, **changes}


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The recipe, its data, and OUT of one uninterrupted run of every stage (``world / 'done'``)."""
    root = tmp_path_factory.mktemp("stages")
    write_reviews(root / "reviews.csv", WORDS, 60, filler=3)
    write_recipe(root / "recipe.yaml", tiny_recipe(root))
    assert run_cli(None, "run", root / "recipe.yaml", "--out", root / "done").code == 0
    return root


def copy_run(world: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(world / "done", out, symlinks=True)  # copy2: modification times kept
    return out


def outputs(out: Path, *names: str) -> dict:
    """Every file of the stage outputs ``names`` (default: all), with its bytes and modification time."""
    found = {}
    for name in names or OUTPUTS:
        path = out / name
        if path.is_dir():
            found.update({f"{name}/{k}": v for k, v in snapshot(path, times=True).items()})
        elif path.exists():
            found[name] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def said(answer) -> str:
    """What the run printed (the stage lines go to stdout), white space folded."""
    return " ".join((answer.out + answer.stderr).split())


def skipped(answer, stage: str) -> bool:
    return f"{stage}: done, skipped (settings unchanged)" in said(answer)


def test_a_rerun_skips_every_stage_and_rewrites_nothing(world, tmp_path, capsys):
    out = copy_run(world, tmp_path)
    before = outputs(out)
    answer = run_cli(capsys, "run", world / "recipe.yaml", "--out", out)
    assert answer.code == 0, answer.stderr[-2000:]
    assert all(skipped(answer, stage) for stage in STAGES), answer.stderr[-2000:]
    assert f"ONNX export: {out / 'export'}" in said(answer)  # where the results are, as after a full run
    assert outputs(out) == before


def test_changed_compress_settings_redo_compress_and_export_only(world, tmp_path, capsys):
    out = copy_run(world, tmp_path)
    kept = outputs(out, "model", "analysis", "metrics.json")
    redone = outputs(out, "compressed", "export")
    answer = run_cli(capsys, "run", world / "recipe.yaml", "--out", out, "--set", "compress.latency_repeats=2")
    assert answer.code == 0, answer.stderr[-2000:]
    assert skipped(answer, "train") and skipped(answer, "analyze")
    assert "compress: settings changed since it was done; running it again" in said(answer)
    assert not skipped(answer, "export")  # it reads the pruned model compress made anew
    assert outputs(out, "model", "analysis", "metrics.json") == kept
    now = outputs(out, "compressed", "export")
    assert all(now.get(name) != was for name, was in redone.items() if was[0] == "file")  # each file written anew
    assert json.loads((out / "compressed" / "report.json").read_text())  # whole, and recorded as done
    prints = json.loads((out / STAGES_FILE).read_text())["stages"]
    assert sorted(prints) == sorted(STAGES)


def test_an_edited_data_file_trains_anew(world, tmp_path, capsys):
    out = copy_run(world, tmp_path)
    data = tmp_path / "reviews.csv"
    shutil.copy(world / "reviews.csv", data)
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(tmp_path))
    first = run_cli(capsys, "run", recipe, "--out", out)  # another data path: trains anew once
    assert first.code == 0, first.stderr[-2000:]
    again = run_cli(capsys, "run", recipe, "--out", out)
    assert all(skipped(again, stage) for stage in STAGES), said(again)
    with data.open("a") as f:
        f.write("a good good film,pos\n")
    edited = run_cli(capsys, "run", recipe, "--out", out)
    assert edited.code == 0, edited.stderr[-2000:]
    assert "train: settings or data files changed since it was done; training anew" in said(edited)


def test_stages_a_killed_run_had_not_recorded_are_run_and_training_is_not(world, tmp_path, capsys):
    out = copy_run(world, tmp_path)
    record = json.loads((out / STAGES_FILE).read_text())
    for stage in ("compress", "export"):  # as if killed during compress: later stages not recorded yet
        del record["stages"][stage]
    (out / STAGES_FILE).write_text(json.dumps(record))
    kept = outputs(out, "model", "checkpoints", "analysis")
    answer = run_cli(capsys, "run", world / "recipe.yaml", "--out", out)
    assert answer.code == 0, answer.stderr[-2000:]
    assert skipped(answer, "train") and skipped(answer, "analyze")
    assert not skipped(answer, "compress") and not skipped(answer, "export")
    assert "evaluating 2 variants" in said(answer)  # compress ran on data prepared again from OUT, not retrained
    assert outputs(out, "model", "checkpoints", "analysis") == kept
    assert sorted(json.loads((out / STAGES_FILE).read_text())["stages"]) == sorted(STAGES)


def test_a_run_interrupted_in_training_continues_from_its_checkpoint(world, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"

    def interrupt(phase: str, step: int) -> None:
        if (phase, step) == ("checkpointed", 2):
            raise KeyboardInterrupt  # Ctrl-C right after the step-2 checkpoint

    monkeypatch.setattr("sora.train.trainer.kill_point", interrupt)
    run_cli(capsys, "run", world / "recipe.yaml", "--out", out)  # the trainer stops, as on Ctrl-C
    assert not (out / "model").exists() and (out / "checkpoints" / "step-2").is_dir()
    monkeypatch.undo()
    answer = run_cli(capsys, "run", world / "recipe.yaml", "--out", out)  # the same command, no --resume
    assert answer.code == 0, answer.stderr[-2000:]
    assert "train: continuing the interrupted training from its newest checkpoint" in said(answer)
    logged = [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r["event"] == "train"] == [1, 2, 3, 4]  # steps 3 and 4 after the resume
    for name in ("model", "export"):  # ends as the uninterrupted run did, every later stage included
        done, resumed = (load_file(root / name / "model.safetensors") for root in (world / "done", out))
        assert done.keys() == resumed.keys() and all(torch.equal(done[k], resumed[k]) for k in done)
    assert sorted(json.loads((out / STAGES_FILE).read_text())["stages"]) == sorted(STAGES)


def test_a_run_of_another_recipe_is_refused_as_before(world, tmp_path, capsys):
    out = copy_run(world, tmp_path)
    before = snapshot(out, times=True)
    other = write_recipe(tmp_path / "other.yaml", tiny_recipe(world, name="another"))
    message = run_cli(capsys, "run", other, "--out", out).error()
    assert "holds a training run already; pass --resume to continue it, or --force to start over" in message
    message = run_cli(capsys, "run", other, "--out", out, "--resume").error()
    assert f"{out / STAGES_FILE}: the run there is recipe 'tiny-stages', not 'another'" in message
    assert snapshot(out, times=True) == before


# -- a broken recipe: refused before the output folder is made and before any data is prepared -----------


def broken(world: Path, tmp_path: Path, case: str, monkeypatch) -> list:
    """The arguments after ``sora run`` of a broken-recipe ``case``."""
    recipe = tiny_recipe(world)
    if case == "unknown section":
        recipe["analyse"] = recipe.pop("analyze")
    if case == "bad key in a section":
        recipe["compress"]["latency_repeat"] = recipe["compress"].pop("latency_repeats")
    if case in ("unknown dataset", "dataset of another task", "system package missing"):
        del recipe["data"]["source"]
        recipe["data"]["dataset"] = {"unknown dataset": "rotten_tomatos", "dataset of another task": "digits"}.get(
            case, "bible_en_es"
        )
        recipe["data"]["task"] = "lm" if case == "dataset of another task" else None
    if case == "system package missing":  # not in the cache, and the package its fetch reads is not installed
        monkeypatch.setenv("SORA_HOME", str(tmp_path / "empty-cache"))
        monkeypatch.setattr("sora.data.builtin.bible.SWORD", tmp_path / "no-sword")
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    extra = {"unknown profile": ["--profile", "quik"], "bad --set key": ["--set", "train.max_stepz=3"]}
    return [path, *extra.get(case, [])]


BROKEN = {  # what the one line says, after "error: ": where (file:line when the key is in the file), and what
    "unknown section": r"recipe\.yaml:\d+: analyse: unknown key",
    "bad key in a section": r"recipe\.yaml:\d+: compress\.latency_repeat: unknown key",
    "unknown dataset": r"recipe\.yaml:\d+: data\.dataset: unknown built-in dataset 'rotten_tomatos' \(built-in: ",
    "dataset of another task": r"recipe\.yaml:\d+: data\.task: 'digits' supports classification, not 'lm'",
    "system package missing": r"recipe\.yaml:\d+: data\.dataset: dataset 'bible_en_es' needs the Debian package sword-",
    "unknown profile": r"recipe\.yaml: no profile 'quik' \(has: quick\)",
    "bad --set key": r"recipe\.yaml:\d+: train\.max_stepz: unknown key",
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_recipe_is_refused_before_any_work(world, tmp_path, capsys, monkeypatch, case):
    def no_data(*args, **kwargs):
        raise AssertionError("data prepared for a broken recipe")

    monkeypatch.setattr("sora.train.job.prepare_data", no_data)
    args = broken(world, tmp_path, case, monkeypatch)
    out = tmp_path / "new" / "out"
    message = run_cli(capsys, "run", *args, "--out", out).error()
    assert re.search(BROKEN[case], message), message
    assert not (tmp_path / "new").exists()
