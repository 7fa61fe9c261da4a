import json

import pytest
import torch

from sora.configio import load
from sora.errors import ConfigError, SoraError
from sora.models import ModelConfig, build_model, load_model, save_model
from sora.models.folder import load_tokenizer
from tests.helpers import tiny


@pytest.mark.parametrize("arch", ["encoder_classifier", "decoder_lm", "seq2seq"])
def test_save_load_round_trip_is_bit_identical(tmp_path, arch):
    model = build_model(
        tiny(arch, encoder={"n_layers": 2, "n_heads": [4, 0], "d_ff": [64, 8]}) if arch != "decoder_lm" else tiny(arch)
    ).eval()
    if arch != "decoder_lm":
        model.config  # noqa: B018
    save_model(model, tmp_path / "m", meta={"labels": ["a", "b", "c"]})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "meta.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    ids = torch.randint(3, 50, (2, 6))
    args = (ids, ids[:, :4]) if arch == "seq2seq" else (ids,)
    assert torch.equal(model(*args), loaded(*args))
    assert loaded.config == model.config


def test_saving_is_atomic_and_replaces(tmp_path):
    model = build_model(tiny())
    save_model(model, tmp_path / "m")
    model2 = build_model(tiny(d_model=16))

    class Broken:
        def save(self, path):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_model(model2, tmp_path / "m", tokenizer=Broken())
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp folder left behind
    assert load_model(tmp_path / "m").config.d_model == 32  # the old model is intact
    save_model(model2, tmp_path / "m")
    assert load_model(tmp_path / "m").config.d_model == 16


def test_tokenizer_travels_with_the_model(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["a good film", "a bad film"], trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    save_model(build_model(tiny()), tmp_path / "m", tokenizer=tok)
    assert load_tokenizer(tmp_path / "m").encode("good film").ids == tok.encode("good film").ids


def test_loading_a_folder_that_does_not_match_its_config_fails_clearly(tmp_path):
    save_model(build_model(tiny()), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["encoder"]["n_heads"] = 2
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SoraError, match="does not match config.json"):
        load_model(tmp_path / "m")
    with pytest.raises(SoraError, match="not a model folder"):
        load_model(tmp_path)


@pytest.mark.parametrize("arch", ["encoder_classifier", "token_classifier", "decoder_lm", "seq2seq"])
def test_config_round_trips_through_json(arch):
    config = tiny(arch, adaptive_span={"max_span": 16})
    assert ModelConfig.model_validate_json(config.model_dump_json()) == config


def test_config_errors_name_the_key_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "arch: encoder_classifier\nvocab_size: 10\nn_classes: 2\nencoder:\n  n_layers: 2\n  n_heads: four\n  d_fff: 3\n"
    )
    with pytest.raises(ConfigError) as info:
        load(ModelConfig, path)
    message = str(info.value)
    assert f"{path}:6: encoder.n_heads: expected int or list[int] (got 'four')" in message
    assert f"{path}:7: encoder.d_fff: unknown key" in message


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"encoder": {"n_layers": 2, "n_heads": [4, 4, 4]}}, "n_heads lists 3 layers but n_layers is 2"),
        ({"arch": "decoder_lm"}, "arch 'decoder_lm' needs 'decoder'"),
        ({"d_model": 30}, "d_model 30 is not divisible by n_heads 4"),
        ({"input": "image", "image": {"size": 28, "patch": 5}}, "patch 5 does not divide image size 28"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_invalid_configs_say_what_is_wrong(overrides, expected):
    base = tiny().model_dump()
    base.pop("head_dim")  # derived from d_model and n_heads when absent
    base.update(overrides)
    with pytest.raises(ValueError, match=expected):
        ModelConfig.model_validate(base)
