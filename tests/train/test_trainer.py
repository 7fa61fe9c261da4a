"""The training loop on tiny synthetic tasks: learning, exact resume, selection, logs, checkpoints."""

import json

import pytest
import torch

from sora.errors import ConfigError
from sora.models import build_model, load_meta, load_model
from sora.train import TrainConfig, Trainer, evaluate
from sora.train.checkpoint import list_checkpoints
from tests.helpers import tiny
from tests.train.synthetic import SyntheticData


def fit(tmp_path, model=None, data=None, *, name="run", resume=False, stop_after_steps=None, **train):
    data = data or SyntheticData("classification")
    model = model or build_model(tiny())
    config = TrainConfig(**{"batch_size": 16, "lr": 3e-3, "quiet": True, "log_every": 1, **train})
    trainer = Trainer(model, data, config, tmp_path / name, resume=resume)
    return trainer, trainer.fit(stop_after_steps=stop_after_steps)


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_loss_decreases_and_the_task_is_learned(tmp_path):
    data = SyntheticData("classification")
    model = build_model(tiny())
    before = evaluate(model, data.loader("validation", 32), "classification")
    _, result = fit(tmp_path, model, data, epochs=4)
    after = evaluate(result.model, data.loader("validation", 32), "classification")
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] >= 0.9
    assert result.stopped == "epochs" and result.step == 4 * 6 and len(result.history) == 4


@pytest.mark.parametrize("stop_at", [4, 3])  # mid-epoch, and exactly at an epoch boundary
def test_resume_ends_with_the_same_parameters_as_an_uninterrupted_run(tmp_path, stop_at):
    """Dropout (RNG), accumulation, mid-epoch validation and a cosine schedule all have to line up."""
    train = dict(max_steps=8, grad_accum=2, warmup_steps=2, schedule="cosine", validate_every_steps=2)

    def model():
        torch.manual_seed(1)
        return build_model(tiny(dropout=0.1))

    straight, _ = fit(tmp_path, model(), name="straight", **train)
    first, stopped = fit(tmp_path, model(), name="resumed", stop_after_steps=stop_at, **train)
    assert stopped.interrupted and stopped.step == stop_at
    torch.manual_seed(123)  # the resumed run must not depend on the state it starts in
    resumed, result = fit(tmp_path, model(), name="resumed", resume=True, **train)
    assert result.step == 8 and result.stopped == "max_steps"
    a, b = params(straight.model), params(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in result.history] == [r["step"] for r in straight_history(tmp_path)]


def straight_history(tmp_path):
    rows = [json.loads(line) for line in (tmp_path / "straight" / "logs" / "train.jsonl").read_text().splitlines()]
    return [r for r in rows if r["event"] == "validation"]


def test_gradient_accumulation_equals_one_large_batch(tmp_path):
    """SGD, because Adam turns float-rounding noise in near-zero gradients into full-size steps."""
    torch.manual_seed(2)
    base = build_model(tiny())
    state = {k: v.clone() for k, v in base.state_dict().items()}
    one, _ = fit(tmp_path, base, name="one", max_steps=3, batch_size=16, grad_accum=1, optimizer="sgd", lr=0.5)
    again = build_model(tiny())
    again.load_state_dict(state)
    two, _ = fit(tmp_path, again, name="two", max_steps=3, batch_size=8, grad_accum=2, optimizer="sgd", lr=0.5)
    a, b = params(one.model), params(two.model)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_early_stopping_keeps_the_best_model(tmp_path):
    # "loss, higher is better" makes the first validation the best one, deterministically
    trainer, result = fit(
        tmp_path, epochs=10, validate_every_steps=2, early_stopping={"metric": "loss", "mode": "max", "patience": 2}
    )
    steps = [r["step"] for r in result.history]
    assert result.stopped == "early_stopping" and steps == [2, 4, 6]
    assert result.best == {"metric": "loss", "mode": "max", "value": result.history[0]["loss"], "step": 2}
    best_dir = tmp_path / "run" / "best"
    assert load_meta(best_dir)["step"] == 2
    best, last = load_model(best_dir), trainer.model
    assert all(torch.equal(p, q) for p, q in zip(result.model.parameters(), best.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(best.parameters(), last.parameters()))


def test_best_model_is_chosen_by_the_metric(tmp_path):
    _, result = fit(tmp_path, epochs=3, best_metric="accuracy")
    top = max(r["accuracy"] for r in result.history)
    first_top = next(r["step"] for r in result.history if r["accuracy"] == top)
    assert result.best["step"] == first_top and result.best["value"] == top


def test_tensorboard_and_jsonl_logs_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit(tmp_path, epochs=1, log_every=2)
    logs = tmp_path / "run" / "logs"
    events = EventAccumulator(str(logs / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/examples_per_s",
        "train/tokens_per_s",
        "val/loss",
        "val/accuracy",
        "val/macro_f1",
    } <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6]
    rows = [json.loads(line) for line in (logs / "train.jsonl").read_text().splitlines()]
    assert {r["event"] for r in rows} == {"train", "validation"} and rows[-1]["step"] == 6


def test_checkpoints_are_complete_model_folders_and_only_the_last_k_stay(tmp_path):
    fit(tmp_path, epochs=2, validate_every_steps=1, keep_last=2)
    root = tmp_path / "run" / "checkpoints"
    kept = list_checkpoints(root)
    assert [p.name for p in kept] == ["step-11", "step-12"]
    assert sorted(p.name for p in root.iterdir()) == ["step-11", "step-12"]  # nothing half-written left behind
    folder = kept[-1]
    assert {
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "rng.safetensors",
        "rng.json",
        "trainer.json",
        "meta.json",
    } <= {p.name for p in folder.iterdir()}
    state = json.loads((folder / "trainer.json").read_text())
    assert state["step"] == 12 and state["epoch"] == 2 and state["batch"] == 0
    load_model(folder)  # sora eval can read a checkpoint as it is


def test_time_budget_stops_the_run(tmp_path):
    _, result = fit(tmp_path, max_minutes=1e-6, epochs=5)
    assert result.stopped == "max_minutes" and result.step == 1


def test_adaptive_span_penalty_shrinks_spans_and_they_stay_in_range(tmp_path):
    model = build_model(tiny("decoder_lm", adaptive_span={"max_span": 16, "ramp": 4, "init": 1.0, "penalty": 5.0}))
    fit(tmp_path, model, SyntheticData("lm"), max_steps=6, lr=1e-2)
    spans = [m.attn.adaptive_span.span_fraction.detach() for m in model.layers]
    assert all(float(s.max()) < 1.0 and float(s.min()) >= 0.0 for s in spans)


def test_bf16_runs_on_cpu_and_fp16_asks_for_cuda(tmp_path):
    _, result = fit(tmp_path, max_steps=2, precision="bf16")
    assert result.step == 2
    with pytest.raises(ConfigError, match="train.precision: fp16 needs a CUDA device"):
        fit(tmp_path, name="fp16", max_steps=2, precision="fp16")


def test_unknown_selection_metric_names_its_key(tmp_path):
    with pytest.raises(ConfigError, match="train.best_metric / train.early_stopping.metric: 'bleu'"):
        fit(tmp_path, max_steps=2, best_metric="bleu")


def test_a_batch_that_does_not_split_over_processes_is_refused(tmp_path, monkeypatch):
    from sora.train import distributed

    data, model = SyntheticData("classification"), build_model(tiny())
    dist = distributed.Dist(world_size=3)  # as if under torchrun; the check comes before any collective
    with pytest.raises(ConfigError, match="train.batch_size: 16 does not split evenly over 3 processes"):
        Trainer(model, data, TrainConfig(max_steps=1, batch_size=16, quiet=True), tmp_path, dist=dist).fit()
