"""One reader of a config section, and one model-folder check, for every command.

A recipe's ``model:``, ``data:``, ``analyze:`` and ``compress:`` sections, or a file holding one section
alone, are read by ``sora.configio.read_section``; every command that reads a model folder checks it
with ``sora.models.folder.require_model_dir``. So the same mistake reads the same way whichever
command meets it.
"""

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sora.configio import RECIPE_KEYS, read_section
from sora.errors import ConfigError
from sora.models import ModelConfig, build_model, save_model
from tests.helpers import run_cli, tiny

SECTIONS = ("model", "data", "analyze", "compress")
VALUES = st.one_of(
    st.none(),
    st.integers(0, 9),
    st.just("text"),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 9), max_size=2),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    mapping=st.dictionaries(st.sampled_from([*SECTIONS, "name", "source", "train"]), VALUES, max_size=4),
    name=st.sampled_from(SECTIONS),
    standalone=st.booleans(),
    required=st.booleans(),
)
def test_a_section_comes_from_a_recipe_or_is_the_whole_file(tmp_path_factory, mapping, name, standalone, required):
    path = tmp_path_factory.mktemp("s") / "config.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    recipe = any(key in mapping for key in RECIPE_KEYS)
    value = mapping.get(name)
    try:
        section = read_section(path, name, standalone=standalone, required=required)
    except ConfigError as e:
        assert recipe and "\n" not in str(e) and str(e).startswith(str(path))
        if value is None:
            assert required and str(e) == f"{path}: a recipe without a {name}: section"
        else:
            assert not isinstance(value, dict) and str(e).endswith(f": {name}: expected a mapping")
            line = 1 + next(i for i, ln in enumerate(path.read_text().splitlines()) if ln.startswith(f"{name}:"))
            assert str(e).startswith(f"{path}:{line}: ")  # the line of the section's key
        return
    if not recipe:
        assert (section is None) if not standalone else (section.data == mapping and section.prefix == ())
    elif value is None:
        assert section is None and not required
    else:
        assert section.data == value and section.prefix == (name,) and section.source == str(path)


def test_overrides_act_inside_the_section_and_errors_name_the_line(tmp_path):
    path = tmp_path / "recipe.yaml"
    text = "name: r\nmodel:\n  arch: decoder_lm\n  vocab_size: 50\n  decoder: {n_layers: 1, n_heads: 2}\n"
    path.write_text(text)
    section = read_section(path, "model")
    assert section.validate(ModelConfig, ["d_model=64"]).d_model == 64
    assert path.read_text() == text and "d_model" not in read_section(path, "model").data
    with pytest.raises(ConfigError, match=r"recipe.yaml:4: model.vocab_size: Input should be greater than 0"):
        read_section(path, "model").validate(ModelConfig, ["vocab_size=0"])
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        read_section(tmp_path / "missing.yaml", "data")


def _recipe(tmp_path, **sections) -> str:
    base = {
        "name": "r",
        "model": {
            "arch": "encoder_classifier",
            "vocab_size": 50,
            "n_classes": 2,
            "encoder": {"n_layers": 1, "n_heads": 2},
        },
        "data": {"source": str(tmp_path / "rows.csv")},
    }
    for key, extra in sections.items():
        base[key] = {**base.get(key, {}), **extra}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return str(path)


@pytest.fixture
def folder_without_weights(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize(
    "section, command",
    [
        ("model", ["inspect", "{recipe}"]),
        ("data", ["eval", "{model}", "--data", "{recipe}"]),
        ("compress", ["compress", "{model}", "--data", "{recipe}", "--out", "{out}"]),
    ],
)
def test_every_command_reads_a_recipe_section_the_same_way(tmp_path, capsys, section, command):
    """A misspelt key in the section a command reads: one line naming the file, its line and the key path."""
    save_model(build_model(tiny()), tmp_path / "fp32")
    recipe = _recipe(tmp_path, **{section: {"bogus": 1}})
    args = [a.format(recipe=recipe, model=tmp_path / "fp32", out=tmp_path / "out") for a in command]
    code, _, err = run_cli(capsys, *args)
    line = 1 + open(recipe).read().splitlines().index("  bogus: 1")
    assert code == 2 and f"recipe.yaml:{line}: {section}.bogus: unknown key" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["inspect", "{model}"],
        ["generate", "{model}"],
        ["eval", "{model}", "--data", "{recipe}"],
        ["analyze", "{model}", "--data", "{recipe}", "--out", "{out}"],
        ["prune", "{model}", "--out", "{out}", "--fraction", "0.5"],
        ["quantize", "{model}", "--out", "{out}"],
        ["compress", "{model}", "--data", "{recipe}", "--out", "{out}"],
        ["hf", "export", "{model}", "--out", "{out}"],
    ],
)
def test_every_command_that_reads_a_model_folder_checks_it_the_same_way(
    tmp_path, capsys, folder_without_weights, command
):
    args = [a.format(model=folder_without_weights, recipe=_recipe(tmp_path), out=tmp_path / "out") for a in command]
    code, _, err = run_cli(capsys, *args)
    assert code == 2, err
    assert (
        f"{folder_without_weights}: not a model folder (needs config.json and model.safetensors; "
        "model.safetensors is missing)"
    ) in err
    assert not (tmp_path / "out").exists()
