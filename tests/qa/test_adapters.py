"""train.adapters: only the adapters and the head train; the run saves an adapter folder naming and checksumming its
base, which loads as base + adapters wherever a model folder is read; OUT/model has LoRA merged in."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sora.errors import SoraError
from sora.models import load_model
from sora.pipeline import run_recipe
from sora.recipe import Recipe
from tests.qa.test_answering import saved_span_model

BATCH = {
    "inputs": torch.tensor([[4, 5, 6, 3, 7, 8, 9, 3]]),
    "valid": torch.ones(1, 8, dtype=torch.bool),
    "segments": torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]]),
}


def adapted_run(tmp_path, monkeypatch, adapters: dict):
    init = saved_span_model(tmp_path, monkeypatch)
    recipe = Recipe.model_validate(
        {
            "name": "qa_adapters",
            "init": str(init),
            "model": json.loads((init / "config.json").read_text()),
            "data": {"dataset": "squad", "task": "span", "max_len": 24, "stride": 6},
            "train": {"max_steps": 4, "batch_size": 4, "lr": 0.05, "quiet": True, "adapters": adapters},
        }
    )
    run_recipe(recipe, tmp_path / "run")
    return init, tmp_path / "run"


def outputs(folder) -> torch.Tensor:
    model = load_model(folder)
    with torch.no_grad():
        return model(BATCH["inputs"], BATCH["valid"], BATCH["segments"])


@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
def test_only_adapters_and_head_train_and_the_adapter_folder_loads_as_base_plus_adapters(tmp_path, monkeypatch, kind):
    init, out = adapted_run(tmp_path, monkeypatch, {"kind": kind, "rank": 4, "size": 8})
    record = json.loads((out / "adapter" / "adapter.json").read_text())
    base = record["base"]
    assert base["init"] == str(init) and len(base["sha256"]) == 64
    assert record["parameters"]["fraction"] < 0.2
    tensors = load_file(str(out / "adapter" / "adapter.safetensors"))
    assert tensors and all(("lora_" in k or ".adapter." in k or k.startswith("head.")) for k in tensors)
    before, after = load_file(str(init / "model.safetensors")), load_model(out / "model").state_dict()
    frozen = "layers.0.ffn.fc_in.weight"  # no adapter on it: frozen, unchanged
    assert torch.equal(before[frozen], after[frozen])
    config = json.loads((out / "model" / "config.json").read_text())
    assert (config["adapter"] is None) == (kind == "lora")  # LoRA merged into OUT/model; bottleneck kept
    assert not torch.equal(outputs(init), outputs(out / "model"))  # the adapters learnt something
    assert torch.allclose(outputs(out / "adapter"), outputs(out / "model"), atol=1e-5)


def test_an_adapter_refuses_a_base_that_changed(tmp_path, monkeypatch):
    _, out = adapted_run(tmp_path, monkeypatch, {"kind": "lora", "rank": 2})
    base = json.loads((out / "adapter" / "adapter.json").read_text())["base"]["path"]
    weights = load_file(f"{base}/model.safetensors")
    weights["embed.tokens.weight"] += 1
    save_file(weights, f"{base}/model.safetensors")
    with pytest.raises(SoraError, match="has changed since the adapter was trained"):
        load_model(out / "adapter")


def test_adapters_without_pretrained_weights_are_refused(tmp_path, monkeypatch):
    init = saved_span_model(tmp_path, monkeypatch)
    recipe = Recipe.model_validate(
        {
            "name": "no_init",
            "model": json.loads((init / "config.json").read_text()),
            "data": {"dataset": "squad", "tokenizer": {"kind": "wordpiece", "vocab_size": 300, "min_frequency": 1}},
            "train": {"max_steps": 1, "quiet": True, "adapters": {"kind": "lora"}},
        }
    )
    with pytest.raises(SoraError, match="give the recipe an init"):
        run_recipe(recipe, tmp_path / "run")
