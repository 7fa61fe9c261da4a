"""Runs own their checkpoints, and a resume is exact or refused in one line (issue 19, defects 2 and 3).

A fresh run in a used folder neither deletes the earlier run's checkpoints nor is resumed from them;
a resume with another recipe, without a run, or from a damaged checkpoint file says which and where;
an early stop survives a resume. Tiny synthetic runs, in process: each fit takes milliseconds.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.kill_resume import write_recipe
from sora.errors import SoraError
from sora.models import build_model
from sora.train import TrainConfig, Trainer
from sora.train.checkpoint import TRAINER_FIELDS, list_checkpoints
from sora.train.run_folder import RUN_FILE
from tests.helpers import run_cli, tiny
from tests.train.synthetic import SyntheticData

TRAIN = dict(batch_size=16, lr=3e-3, quiet=True, max_steps=6, checkpoint_every_steps=1, keep_last=2, threads=1)
CHECKPOINT_FILES = [
    "optimizer.safetensors",
    "optimizer.json",
    "rng.safetensors",
    "rng.json",
    "trainer.json",
    "model.safetensors",
]


def fit(folder, *, resume=False, stop_after_steps=None, dropout=0.1, **train):
    torch.manual_seed(1)
    model = build_model(tiny(dropout=dropout))
    trainer = Trainer(model, SyntheticData("classification"), TrainConfig(**{**TRAIN, **train}), folder, resume=resume)
    return trainer.fit(stop_after_steps=stop_after_steps)


def same_parameters(a, b) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every resume below must reproduce."""
    return fit(tmp_path_factory.mktemp("straight") / "run")


def test_a_new_run_in_a_used_folder_keeps_to_its_own_checkpoints(tmp_path, straight):
    out = tmp_path / "run"
    fit(out, max_steps=9, seed=5)  # an earlier run, longer: its step-8 and step-9 outnumber the new run's
    earlier = [p.name for p in list_checkpoints(out / "checkpoints")]
    fit(out, stop_after_steps=3)  # a new run, interrupted
    names = sorted(p.name for p in list_checkpoints(out / "checkpoints"))
    assert names == sorted(["step-2", "step-3"] + earlier)  # rotation took nothing of either run's newest

    result = fit(out, resume=True)  # from the new run's step-3, not the earlier run's step-9
    assert result.step == 6 and same_parameters(result.model, straight.model)


def test_rotation_finishes_what_a_killed_rotation_left(tmp_path):
    out = tmp_path / "run"
    fit(out, stop_after_steps=2)
    half_deleted = out / "checkpoints" / ".old-step-1"  # renamed out of the way, then killed mid-delete
    (half_deleted / "config.json").parent.mkdir(parents=True)
    (half_deleted / "config.json").write_text("{}")
    fit(out, resume=True, max_steps=3)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-3"]


def test_an_early_stop_survives_a_resume(tmp_path):
    out = tmp_path / "run"
    # "loss, higher is better" makes the first validation the best: the run stops at step 6 of 30
    stop = dict(max_steps=30, validate_every_steps=2, early_stopping={"metric": "loss", "mode": "max", "patience": 2})
    stopped = fit(out, **stop)
    assert stopped.stopped == "early_stopping" and stopped.step == 6
    again = fit(out, resume=True, **stop)  # as a run killed after its last checkpoint, before its end, is resumed
    assert again.stopped == "early_stopping" and again.step == 6 and again.history == stopped.history
    assert same_parameters(again.model, stopped.model)


def test_an_interruption_at_the_early_stop_step_keeps_the_decision(tmp_path):
    stop = dict(max_steps=30, validate_every_steps=2, early_stopping={"metric": "loss", "mode": "max", "patience": 2})
    straight = fit(tmp_path / "straight", **stop)
    halted = fit(tmp_path / "run", stop_after_steps=straight.step, **stop)  # Ctrl-C at the step the stop is decided
    assert halted.stopped == "interrupted"
    again = fit(tmp_path / "run", resume=True, **stop)
    assert again.stopped == "early_stopping" and again.step == straight.step
    assert same_parameters(again.model, straight.model)


def test_a_resume_before_the_first_checkpoint_starts_the_same_run_again(tmp_path, straight):
    out = tmp_path / "run"
    fit(out, stop_after_steps=1)
    shutil.rmtree(out / "checkpoints")  # as if killed before its first checkpoint
    result = fit(out, resume=True)
    assert result.step == 6 and same_parameters(result.model, straight.model)


def test_a_resume_without_a_run_is_refused(tmp_path):
    with pytest.raises(SoraError, match=f"holds no run to resume \\(no {RUN_FILE}\\)"):
        fit(tmp_path / "empty", resume=True)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"lr": 1e-3}, "train.lr=0.003"),
        ({"seed": 3}, "train.seed=0"),
        ({"optimizer": "sgd"}, 'train.optimizer="adamw"'),
        ({"early_stopping": {"patience": 4}}, "train.early_stopping=null"),
        ({"dropout": 0.0}, "model.dropout=0.1"),
    ],
)
def test_a_resume_with_another_recipe_names_the_first_key_that_differs(tmp_path, change, key):
    out = tmp_path / "run"
    fit(out, stop_after_steps=2)
    with pytest.raises(SoraError, match=f"the run was trained with {key}, the recipe now says"):
        fit(out, resume=True, **change)


def test_a_resume_may_change_when_the_run_ends_and_how_it_reports(tmp_path):
    out = tmp_path / "run"
    fit(out, stop_after_steps=2)
    assert fit(out, resume=True, max_steps=4, quiet=False, log_every=3, keep_last=1).step == 4


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run interrupted at step 3, with checkpoints step-2 and step-3."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    fit(out, stop_after_steps=3)
    return out


damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("garbage"), st.binary(max_size=64)),
    st.tuples(st.just("delete"), st.none()),
)


@settings(max_examples=36, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(CHECKPOINT_FILES), how=damage)
def test_a_damaged_checkpoint_file_is_one_line_naming_it_or_an_exact_resume(
    tmp_path_factory, interrupted, straight, name, how
):
    out = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(interrupted, out)
    path = out / "checkpoints" / "step-3" / name
    kind, arg = how
    if kind == "truncate":
        path.write_bytes(path.read_bytes()[: int(arg * path.stat().st_size)])
    elif kind == "garbage":
        path.write_bytes(arg)
    else:
        path.unlink()
    try:
        result = fit(out, resume=True)
    except SoraError as e:
        message = str(e)
        assert "\n" not in message and str(path.parent) in message and name in message
    else:  # harmless damage (a dropped final newline) or a checkpoint no longer complete: the step-2 one
        assert result.step == 6 and same_parameters(result.model, straight.model)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
json_fields = st.sampled_from(
    [("trainer.json", k) for k in [*TRAINER_FIELDS, "run_id"]]
    + [("rng.json", "python"), ("rng.json", "numpy"), ("optimizer.json", "param_groups"), ("optimizer.json", "scalars")]
)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=json_fields, value=json_values)
def test_a_checkpoint_field_with_a_wrong_value_is_one_line_never_a_traceback(
    tmp_path_factory, interrupted, where, value
):
    out = tmp_path_factory.mktemp("edited") / "run"
    shutil.copytree(interrupted, out)
    name, key = where
    path = out / "checkpoints" / "step-3" / name
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, key: value}))
    try:
        fit(out, resume=True)
    except SoraError as e:
        assert "\n" not in str(e) and str(path.parent) in str(e)


def test_the_command_line_refuses_a_resume_it_cannot_do_exactly(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", recipe, "--out", out, "--resume")
    assert code == 2 and "no run to resume" in err and "Traceback" not in err
    assert run_cli(capsys, "train", recipe, "--out", out, "--set", "train.max_steps=2")[0] == 0
    code, _, err = run_cli(capsys, "train", recipe, "--out", out, "--resume", "--set", "data.split.seed=1")
    assert code == 2 and "data.split.seed=0, the recipe now says 1" in err
    run = json.loads((out / RUN_FILE).read_text())
    assert run["spec"]["recipe"] == "kill-resume" and "storage_options" not in run["spec"]["data"]
