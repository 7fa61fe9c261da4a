"""Bad input names what and where: malformed rows by file:line (or skipped and counted), unknown labels,
empty data, missing columns, bad config keys."""

from __future__ import annotations

import pytest

from sora.configio import validate
from sora.data import DataConfig, SkippedRowsWarning, prepare_data
from sora.errors import ConfigError, SoraError


def _prepare(path, **extra):
    cfg = {"source": str(path), "tokenizer": {"kind": "char"}, "split": {"validation": 0.0, "test": 0.0}, **extra}
    return prepare_data(DataConfig.model_validate(cfg))


def _csv(tmp_path, body: str):
    path = tmp_path / "data.csv"
    path.write_text("label,text\n" + body, encoding="utf-8")
    return path


GOOD = "pos,fine film\nneg,dull film\n"


def test_malformed_csv_row_names_file_and_line(tmp_path):
    path = _csv(tmp_path, GOOD + "pos,one,too many\n" + GOOD)
    with pytest.raises(SoraError, match=r"data\.csv:4: expected 2 fields \(label, text\), found 3"):
        _prepare(path)


def test_skip_counts_bad_rows_in_a_warning(tmp_path):
    path = _csv(tmp_path, GOOD + "pos,one,too many\n" + GOOD + 'neg,"unterminated\n')
    with pytest.warns(SkippedRowsWarning, match=r"skipped 2 bad row\(s\); first: .*data\.csv:4"):
        data = _prepare(path, on_error="skip")
    assert len(data.splits["train"]) == 4 and data.describe()["skipped_rows"] == 2


def test_malformed_jsonl_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n["not", "an object"]\n')
    with pytest.raises(SoraError, match=r"d\.jsonl:2: not valid JSON"):
        _prepare(path)
    with pytest.warns(SkippedRowsWarning, match="skipped 2"):
        assert len(_prepare(path, on_error="skip").splits["train"]) == 1


def test_unknown_label_is_named_with_its_line(tmp_path):
    path = _csv(tmp_path, GOOD + "meh,so-so film\n")
    with pytest.raises(SoraError, match=r"data\.csv:4: unknown label 'meh' in column 'label' \(labels: pos, neg\)"):
        _prepare(path, label_names=["pos", "neg"])


def test_missing_column_names_the_columns_there_are(tmp_path):
    path = _csv(tmp_path, GOOD)
    with pytest.raises(SoraError, match=r"missing column 'review' for role 'text' \(columns: label, text\)"):
        _prepare(path, columns={"text": "review"})


def test_missing_value_in_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"label": "y"}\n')
    with pytest.raises(SoraError, match=r"d\.jsonl:2: missing value for 'text'"):
        _prepare(path)


def test_empty_dataset(tmp_path):
    with pytest.raises(SoraError, match="the dataset is empty"):
        _prepare(_csv(tmp_path, ""))
    path = _csv(tmp_path, "pos,a,b\n")
    with pytest.raises(SoraError, match="empty.*1 bad rows skipped, first: .*data.csv:2"):
        _prepare(path, on_error="skip")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("label,text\npos,caf\xe9\n".encode("latin-1"))
    with pytest.raises(SoraError, match=r"latin.csv:2: not valid UTF-8 text \(byte 0xe9\)"):
        _prepare(path)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"recipe.yaml: data.tokenizr: unknown key"):
        validate(DataConfig, {"dataset": "digits", "tokenizr": {}}, source="recipe.yaml", prefix=("data",))
    with pytest.raises(ConfigError, match="exactly one of 'dataset'"):
        validate(DataConfig, {}, source="r.yaml")
    with pytest.raises(ConfigError, match="unknown role"):
        validate(DataConfig, {"dataset": "digits", "columns": {"txt": "x"}}, source="r.yaml")
    with pytest.raises(SoraError, match="unknown built-in dataset 'nope'"):
        prepare_data(DataConfig(dataset="nope"))
    with pytest.raises(ConfigError, match="needs 'path'"):
        validate(DataConfig, {"dataset": "digits", "tokenizer": {"kind": "pretrained"}}, source="r.yaml")


def test_unknown_format_extension(tmp_path):
    path = tmp_path / "data.weird"
    path.write_text("x")
    with pytest.raises(SoraError, match="cannot tell the format"):
        _prepare(path)


def test_a_recipes_data_section_is_typed(tmp_path):
    from sora.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: x\nmodel: {arch: encoder_classifier, vocab_size: 10, n_classes: 2, encoder: {}}\n"
        "data:\n  dataset: sms_spam\n  tokenizer: {kind: bpee}\n"
    )
    with pytest.raises(ConfigError, match=r"r.yaml:5: data.tokenizer.kind: Input should be 'bpe', 'wordpiece'"):
        load_recipe(recipe)
    recipe.write_text(
        "name: x\nmodel: {arch: encoder_classifier, vocab_size: 10, n_classes: 2, encoder: {}}\n"
        "data: {dataset: sms_spam, limit: 5}\n"
    )
    assert load_recipe(recipe, overrides=["data.limit=7"]).data.limit == 7


def test_data_file_reader_takes_a_recipe_or_a_data_config_and_refuses_the_rest(tmp_path):
    from sora.data import read_data_config

    csv = _csv(tmp_path, GOOD)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {{arch: encoder_classifier}}\ndata:\n  source: {csv}\n  limit: 5\n")
    assert read_data_config(recipe, ["limit=1"]).limit == 1  # overrides act inside the data section
    plain = tmp_path / "data.yaml"
    plain.write_text(f"source: {csv}\n")
    assert read_data_config(plain).source == str(csv)
    no_data = tmp_path / "no_data.yaml"
    no_data.write_text("model: {arch: encoder_classifier}\n")
    with pytest.raises(ConfigError, match="no_data.yaml: a recipe without a data: section"):
        read_data_config(no_data)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("name: x\ndata: rotten_tomatoes\n")
    with pytest.raises(ConfigError, match=r"scalar.yaml:2: data: expected a mapping"):
        read_data_config(scalar)
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"data:\n  source: {csv}\n  limt: 5\n")
    with pytest.raises(ConfigError, match=r"typo.yaml:3.*limt"):
        read_data_config(typo)
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        read_data_config(tmp_path / "missing.yaml")
