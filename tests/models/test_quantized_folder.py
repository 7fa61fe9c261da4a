"""An int8 model folder loads with the model folder alone (sora.models.quantized): compression is not needed
to read it, and a quantization record that does not fit the architecture is one line naming config.json."""

import json
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sora.compress import QuantizeConfig, quantize_model, save_quantized
from sora.errors import SoraError
from sora.models import build_model, load_model
from sora.models.quantized import INT8_METHOD, REQUIRED_KEYS
from sora.particles import Int8Embedding, Int8Linear
from tests.helpers import tiny

ALL = QuantizeConfig(min_weights=0, min_side=0)  # tiny models: every Linear in int8


@pytest.fixture(scope="module")
def quantized():
    torch.manual_seed(0)
    return quantize_model(build_model(tiny("decoder_lm")).eval(), ALL)  # a tied LM head: stored once


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory, quantized):
    folder = tmp_path_factory.mktemp("int8") / "model"
    save_quantized(quantized, folder)
    return folder


def test_the_reloaded_int8_model_is_the_quantized_one(int8_folder, quantized):
    loaded = load_model(int8_folder)  # sora.models alone: no compression code is needed to read it
    head, table = loaded.head.proj, loaded.embed.tokens
    assert isinstance(head, Int8Linear) and head.compute == quantized.head.proj.compute
    assert isinstance(table, Int8Embedding)
    assert head.weight is table.weight and head.scale is table.scale  # one copy in memory, as when saved
    assert loaded.state_dict().keys() == quantized.state_dict().keys()
    ids = torch.randint(3, 50, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids), quantized(ids))


def _damaged(int8_folder, tmp_path, change) -> str:
    """A copy of the folder whose config.json's quantization record ``change`` edited; the load error."""
    folder = tmp_path / "damaged"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(int8_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    change(config["quantization"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SoraError) as error:
        load_model(folder)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{folder}/config.json: ")
    return message


def test_an_unknown_method_is_named(int8_folder, tmp_path):
    message = _damaged(int8_folder, tmp_path, lambda q: q.update(method="int4_magic"))
    assert message.endswith("unknown quantization method 'int4_magic'")


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_a_missing_key_is_named(int8_folder, tmp_path, key):
    assert _damaged(int8_folder, tmp_path, lambda q: q.pop(key)).endswith(f"quantization: missing key {key!r}")


NOT_LINEAR = ["layers.0.attn_norm", "layers.1", "layers.0.attn", "layers.0.ffn", "embed", "final_norm"]
ABSENT = st.from_regex(r"(layers\.[2-9]|encoder|decoder)\.[a-z_]{1,8}", fullmatch=True)  # 2 layers, no stacks


@settings(max_examples=25, deadline=None, derandomize=True)
@given(name=st.one_of(st.sampled_from(NOT_LINEAR), ABSENT))
def test_a_linear_the_architecture_lacks_is_one_line(int8_folder, tmp_path_factory, name):
    message = _damaged(int8_folder, tmp_path_factory.mktemp("case"), lambda q: q["linear"].append(name))
    if name in NOT_LINEAR:
        assert message.endswith(f"quantization.linear: {name!r} is not a Linear in this architecture")
    else:
        assert "quantization: names a module this architecture does not have" in message


@settings(max_examples=15, deadline=None, derandomize=True)
@given(name=ABSENT)
def test_an_embedding_the_architecture_lacks_is_one_line(int8_folder, tmp_path_factory, name):
    message = _damaged(int8_folder, tmp_path_factory.mktemp("case"), lambda q: q["embeddings"].append(name))
    assert "quantization: names a module this architecture does not have" in message


def test_the_method_name_is_the_one_quantize_writes(int8_folder):
    assert json.loads((int8_folder / "config.json").read_text())["quantization"]["method"] == INT8_METHOD
