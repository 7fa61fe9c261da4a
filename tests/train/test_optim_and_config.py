"""Optimizer groups, schedules and the strict train config."""

import pytest
import torch

from sora.configio import validate
from sora.errors import ConfigError
from sora.models import build_model
from sora.recipe import load_recipe
from sora.train import TrainConfig
from sora.train.optim import build_optimizer, lr_factor, param_groups
from tests.helpers import tiny


def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = build_model(tiny("decoder_lm"))  # tied LM head: the embedding matrix appears once
    decay, keep = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in keep["params"]}
    assert "layers.0.attn.q_proj.weight" in decayed and "layers.1.ffn.fc_out.weight" in decayed
    assert {
        "embed.tokens.weight",
        "embed.position.weight",
        "layers.0.attn_norm.weight",
        "layers.0.attn.q_proj.bias",
        "final_norm.bias",
    } <= kept
    assert not decayed & kept
    assert len(decay["params"]) + len(keep["params"]) == len(list(model.parameters()))


def test_sgd_with_nesterov_momentum():
    opt = build_optimizer(build_model(tiny()), TrainConfig(optimizer="sgd", momentum=0.9, nesterov=True, max_steps=1))
    assert (
        isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    )


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_schedules_warm_up_then_decay(schedule):
    cfg = TrainConfig(schedule=schedule, warmup_steps=10, max_steps=110)
    factors = [lr_factor(s, 110, cfg) for s in range(110)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:10]))
    if schedule == "constant":
        assert factors[-1] == 1.0
    else:
        assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[-1] < 0.05
    if schedule == "cosine":
        assert factors[60] == pytest.approx(0.5)


def test_time_budget_drives_the_decay_when_steps_are_unknown():
    cfg = TrainConfig(schedule="linear", max_minutes=1.0)
    assert lr_factor(5, None, cfg, progress=0.25) == pytest.approx(0.75)


def test_config_errors_name_the_key_and_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nmodel: {arch: encoder_classifier, vocab_size: 10, encoder: {n_layers: 1}, n_classes: 2}\n"
        "train:\n  epochs: 1\n  lr: fast\n  optimiser: adamw\n"
    )
    with pytest.raises(ConfigError) as e:
        load_recipe(recipe)
    message = str(e.value)
    assert f"{recipe}:5: train.lr" in message and f"{recipe}:6: train.optimiser: unknown key" in message


def test_a_run_needs_an_end():
    with pytest.raises(ConfigError, match="epochs, max_steps or max_minutes"):
        validate(TrainConfig, {"lr": 1e-3}, source="r.yaml", prefix=("train",))
