"""A user's own data as it comes: bare carriage returns, repeated texts, train/test overlap, empty texts and
labels only the test split has. Each problem is read as csv/pandas read it, or named by file:line."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import yaml

from sora.data import prepare_data
from sora.data.duplicates import SplitOverlapWarning
from sora.data.formats import iter_rows
from sora.data.table import RowErrors
from sora.errors import SoraError
from tests.helpers import run_cli

CHAR = {"kind": "char", "min_frequency": 1}


def rows_of(path, on_error="fail") -> list[dict]:
    return [values for _, values in iter_rows(str(path), "csv", RowErrors(on_error))]


def csv_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = [r for r in csv.reader(f) if r]
    return [dict(zip(header, r)) for r in rows]


@pytest.mark.parametrize(
    "text",
    [
        'text,label\n"a tweet\rwith a return",pos\nplain,neg\n',  # quoted: the \r is text
        "text,label\r\nfirst,pos\r\nsecond,neg\r\n",  # Windows line ends
        "text,label\rfirst,pos\rsecond,neg\r",  # an old Mac file: \r ends every line
        "text,label\nfirst,pos\rsecond,neg\n",  # a \r between two whole rows: two rows, as csv reads them
    ],
)
def test_carriage_returns_read_as_csv_reads_them(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_bytes(text.encode())
    assert rows_of(path) == csv_rows(path)


def test_a_bare_carriage_return_inside_a_field_is_named_and_skipping_keeps_no_half(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_bytes(b"text,label\nfine day,pos\nhalf one\rhalf two,neg\nlast one,pos\n")
    with pytest.raises(SoraError, match=r"tweets.csv:3: a bare carriage return \(\\r\) inside a field"):
        rows_of(path)
    errors = RowErrors("skip")
    rows = [values for _, values in iter_rows(str(path), "csv", errors)]
    assert rows == [{"text": "fine day", "label": "pos"}, {"text": "last one", "label": "pos"}]
    assert len(errors.skipped) == 1  # one line, cut in two by csv, is one bad row
    # csv itself reads the line as two rows: a one-field fragment and a labelled fragment
    assert [r for r in csv_rows(path) if r.get("text") == "half two"] == [{"text": "half two", "label": "neg"}]


def questions(path, n=200, distinct=40):
    """``n`` labelled questions of which only ``distinct`` differ (each label has distinct/2 of them)."""
    path.write_text("text,label\n" + "".join(f"question {i % distinct},{'ab'[i % distinct % 2]}\n" for i in range(n)))
    return path


def split_texts(data) -> dict[str, set[str]]:
    return {k: set(data.texts(k)) for k in ("train", "validation", "test")}


def test_group_keeps_every_row_and_no_text_in_two_splits(tmp_path):
    data = prepare_data({"source": str(questions(tmp_path / "q.csv")), "tokenizer": CHAR})
    texts = split_texts(data)
    assert sum(len(v) for v in data.splits.values()) == 200
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]
    info = data.describe(0)
    assert info["duplicates"]["extra_copies"] == 160 and info["duplicates"]["distinct"] == 40
    assert info["overlap"]["test"]["in_train"] == 0


def test_group_joins_a_group_column(tmp_path):
    path = tmp_path / "g.csv"
    # four texts per film, and the same texts again under other films: neither may straddle two splits
    path.write_text("text,label,film\n" + "".join(f"line {i % 30},{'ab'[i % 2]},film {i % 10}\n" for i in range(120)))
    data = prepare_data({"source": str(path), "tokenizer": CHAR, "split": {"group": "film"}})
    texts = split_texts(data)
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]


@pytest.mark.filterwarnings("ignore:.*validation examples")  # warned too; the test split's line is the one asserted
def test_keep_warns_of_the_overlap(tmp_path):
    with pytest.warns(SplitOverlapWarning, match=r"of 20 test examples .* also occur in training"):
        data = prepare_data({"source": str(questions(tmp_path / "q.csv")), "tokenizer": CHAR, "duplicates": "keep"})
    assert data.describe(0)["overlap"]["test"]["in_train"] > 10


def test_drop_keeps_the_first_and_names_conflicting_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"q{i},{'ab'[i % 2]}\n" for i in range(30)) + "q1,a\nq2,b\nq3,b\n")
    with pytest.warns(UserWarning, match=r"2 input\(s\) have more than one label.*'q1' \(.*d.csv:3\): a, b"):
        data = prepare_data({"source": str(path), "tokenizer": CHAR, "duplicates": "drop"})
    info = data.describe(0)
    assert sum(info["splits"].values()) == 30 and info["duplicates"]["dropped"] == 3
    assert info["duplicates"]["conflicting_labels"] == 2
    labels = {t: data.labels[y] for k in data.splits for t, y in zip(data.texts(k), data.splits[k].labels)}
    assert labels["q1"] == "b" and labels["q2"] == "a"  # the first row's label


def test_a_given_test_file_cannot_move_so_its_overlap_is_reported(tmp_path):
    train = questions(tmp_path / "train.csv", n=60, distinct=30)
    test = tmp_path / "test.csv"
    test.write_text("text,label\n" + "".join(f"question {i},{'ab'[i % 2]}\n" for i in range(25, 35)))
    with pytest.warns(SplitOverlapWarning, match=r"5 of 10 test examples .* the source came split"):
        data = prepare_data({"source": {"train": str(train), "test": str(test)}, "tokenizer": CHAR})
    assert data.describe(0)["overlap"]["test"] == {"examples": 10, "in_train": 5, "share": 0.5}


def test_identical_images_compare_by_their_bytes(tmp_path):
    rng = np.random.default_rng(0)
    distinct = rng.integers(0, 255, (10, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", image=np.concatenate([distinct] * 3), label=np.arange(30) % 2)
    data = prepare_data({"source": str(tmp_path / "img.npz")})
    info = data.describe(0)
    assert info["duplicates"]["extra_copies"] == 20 and info["overlap"]["test"]["in_train"] == 0


def test_an_empty_text_is_a_bad_row_named_by_its_line(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(20)) + '"  ",a\n')
    with pytest.raises(SoraError, match=r"e.csv:22: empty text in column 'text'"):
        prepare_data({"source": str(path), "tokenizer": CHAR})
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        data = prepare_data({"source": str(path), "tokenizer": CHAR, "on_error": "skip"})
    assert sum(len(v) for v in data.splits.values()) == 20


def test_a_label_only_the_test_file_has_is_named_by_its_line(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)))
    test.write_text("text,label\nu1,a\nu2,c\nu3,c\n")
    with pytest.warns(UserWarning, match=r"test split has label\(s\) 'c' .*first rows: 'c' at .*test.csv:3\)"):
        prepare_data({"source": {"train": str(train), "test": str(test)}, "tokenizer": CHAR})


def test_data_show_reports_duplicates_of_a_data_file_and_a_config(tmp_path, capsys):
    path = questions(tmp_path / "q.csv")
    code, out, _ = run_cli(capsys, "data", "show", path)
    assert code == 0 and "160 of 200 rows repeat an earlier input" in out and "test examples also in training: 0" in out
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"source": str(path), "tokenizer": CHAR, "duplicates": "keep"}))
    code, out, err = run_cli(capsys, "data", "show", config, "--json")
    info = json.loads(out)
    assert code == 0 and info["duplicates"]["examples"][0] == {"input": "question 0", "count": 5, "first": f"{path}:2"}
    assert info["overlap"]["test"]["in_train"] > 10 and "also occur in training" in err


def test_training_logs_and_keeps_the_figures(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "q",
                "model": {
                    "arch": "encoder_classifier",
                    "vocab_size": 16,
                    "d_model": 8,
                    "n_classes": 2,
                    "encoder": {"n_layers": 1, "n_heads": 1, "d_ff": 8},
                },
                "data": {"source": str(questions(tmp_path / "q.csv")), "tokenizer": CHAR},
                "train": {"max_steps": 1, "batch_size": 8},
            }
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, out, err = run_cli(capsys, "train", recipe, "--out", tmp_path / "run")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["duplicates"]["extra_copies"] == 160 and metrics["data"]["overlap"]["test"]["in_train"] == 0
    assert "160 of 200 rows repeat an earlier input" in out + err


def test_an_image_folder_given_by_a_relative_path_keeps_its_labels(tmp_path, monkeypatch):
    from PIL import Image

    for label, fill in (("dark", 20), ("light", 230)):
        (tmp_path / "shapes" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((4, 4), fill + i, np.uint8)).save(tmp_path / "shapes" / label / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    data = prepare_data({"source": "shapes"})
    assert data.labels == ["dark", "light"] and sum(len(v) for v in data.splits.values()) == 12
