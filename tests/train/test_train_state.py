"""The training loop's named parts (issue 20, item 4): ``TrainState`` is what trainer.json holds, one
``stop_reason`` decides every stop, ``BestTracker`` picks the best model and stops early.

Generated states, step counts and metric sequences are checked against the rules written out here;
the real loop's use of them is pinned by a fit whose checkpoints are read back as TrainStates (exact
resume itself: test_resume_runs.py and tests/reliability/test_kill_resume.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sora.errors import ConfigError
from sora.models import build_model
from sora.train import TrainConfig, Trainer
from sora.train.checkpoint import TRAINER_FIELDS, list_checkpoints, read_checkpoint, read_trainer
from sora.train.state import SAVED_STOP_REASONS, BestTracker, TrainState, stop_reason, total_steps
from tests.helpers import tiny
from tests.train.synthetic import SyntheticData

FAST = settings(max_examples=60, deadline=None, derandomize=True)
counts = st.integers(0, 10**6)
records = st.fixed_dictionaries({"step": counts, "loss": st.floats(0, 10), "epoch": st.floats(0, 100)})
states = st.builds(
    TrainState,
    step=counts,
    epoch=counts,
    batch=counts,
    elapsed_s=st.floats(0, 1e6),
    bad_validations=counts,
    best=st.none()
    | st.fixed_dictionaries(
        {
            "metric": st.just("loss"),
            "mode": st.sampled_from(["min", "max"]),
            "value": st.floats(-1e3, 1e3),
            "step": counts,
        }
    ),
    stopped=st.sampled_from(SAVED_STOP_REASONS),
    history=st.lists(records, max_size=4),
    examples=counts,
    tokens=counts,
    scaler=st.none() | st.just({"scale": 65536.0, "_growth_tracker": 3}),
)


@FAST
@given(states)
def test_a_state_survives_trainer_json_and_passes_its_checks(state):
    saved = json.loads(json.dumps({**state.to_json(), "run_id": "r", "world_size": 1}))
    assert TrainState.from_json(saved) == state  # other keys (run_id, world_size) ignored
    assert all(check(saved[key]) for key, check in TRAINER_FIELDS.items())
    assert ("scaler" in saved) == (state.scaler is not None)


def test_trainer_json_keys_are_the_state_fields_once():
    checked = [f.name for f in fields(TrainState) if f.name != "scaler"]
    assert list(TRAINER_FIELDS) == [*checked, "world_size"]
    assert list(TrainState().to_json()) == checked  # trainer.json's key order, as before the state had a class


def reference_stop(step, total, max_steps, time_up, halted, early):
    """The rule, written out: a decided early stop, then the run's length, its time, an interruption."""
    reasons = [
        ("early_stopping", early),
        ("max_steps" if max_steps == total else "epochs", total is not None and step >= total),
        ("max_minutes", time_up),
        ("interrupted", halted),
    ]
    return next((reason for reason, applies in reasons if applies), None)


@FAST
@given(
    step=st.integers(0, 50),
    max_steps=st.none() | st.integers(1, 40),
    epochs=st.none() | st.floats(0.1, 5),
    n_batches=st.integers(1, 20),
    accum=st.integers(1, 4),
    time_up=st.booleans(),
    halted=st.booleans(),
    early=st.booleans(),
)
def test_stop_reason_follows_one_order(step, max_steps, epochs, n_batches, accum, time_up, halted, early):
    cfg = TrainConfig(
        max_steps=max_steps, epochs=epochs, max_minutes=None if max_steps or epochs else 1.0, grad_accum=accum
    )
    total = total_steps(cfg, n_batches)
    by_epochs = math.ceil(epochs * math.ceil(n_batches / accum)) if epochs else None  # steps per epoch, rounded up
    assert total == (min(x for x in (max_steps, by_epochs) if x) if (max_steps or epochs) else None)
    assert stop_reason(cfg, step, total, time_up=time_up, halted=halted, early_stopped=early) == reference_stop(
        step, total, cfg.max_steps, time_up, halted, early
    )


@FAST
@given(
    values=st.lists(st.floats(0, 1), min_size=1, max_size=12),
    mode=st.sampled_from(["min", "max"]),
    min_delta=st.sampled_from([0.0, 0.05]),
    patience=st.none() | st.integers(1, 4),
)
def test_the_tracker_keeps_the_best_and_counts_the_rest(values, mode, min_delta, patience):
    tracker, state = BestTracker("accuracy", mode, min_delta, patience), TrainState()
    best, waited = None, 0
    for step, value in enumerate(values, 1):
        improves = best is None or (value < best - min_delta if mode == "min" else value > best + min_delta)
        best, best_step, waited = (value, step, 0) if improves else (best, state.best["step"], waited + 1)
        assert tracker.observe(state, {"step": step, "epoch": 0.5, "accuracy": value}, "classification") == improves
        assert state.best == {"metric": "accuracy", "mode": mode, "value": best, "step": best_step}
        assert state.bad_validations == waited
        assert tracker.exhausted(state) == (patience is not None and waited >= patience)


def test_the_tracker_names_a_metric_the_task_does_not_have():
    tracker = BestTracker.from_config(TrainConfig(max_steps=1, best_metric="bleu"), "loss")
    with pytest.raises(
        ConfigError,
        match=r"train.best_metric .* 'bleu' is not a validation metric of the "
        r"classification task \(has: loss, accuracy\)",
    ):
        tracker.observe(TrainState(), {"step": 1, "epoch": 1.0, "loss": 0.5, "accuracy": 0.9}, "classification")


def test_the_loop_checkpoints_its_state_and_the_result_reports_it(tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(
        batch_size=16,
        lr=3e-3,
        quiet=True,
        threads=1,
        max_steps=12,
        validate_every_steps=2,
        checkpoint_every_steps=3,
        keep_last=10,
        early_stopping={"metric": "loss", "patience": 1, "min_delta": 0.5},
    )
    result = Trainer(build_model(tiny()), SyntheticData("classification"), config, tmp_path).fit()
    assert result.stopped == "early_stopping" and result.step < 12
    saved = {int(p.name.split("-")[1]): read_checkpoint(p).state for p in list_checkpoints(tmp_path / "checkpoints")}
    last = saved[result.step]
    assert (last.step, last.stopped, last.best, last.history) == (
        result.step,
        "early_stopping",
        result.best,
        result.history,
    )
    assert sorted(saved) == sorted({s for s in range(1, result.step + 1) if s % 2 == 0 or s % 3 == 0})
    assert [r["step"] for r in last.history] == [s for s in sorted(saved) if s % 2 == 0]
    chosen = next(r for r in result.history if r["step"] == result.best["step"])
    assert result.best_validation() == {k: v for k, v in chosen.items() if k not in ("step", "epoch")}
    assert read_trainer(tmp_path / "checkpoints" / f"step-{result.step}")["version"] == 1
