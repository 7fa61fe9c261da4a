"""What moved out of sora/data/prepare.py (issue 20, item 4): the split selection (sora.data.splits),
the row checks (sora.data.rows), the task builders (sora.data.builders), the ready dataset
(sora.data.prepared); and the streaming rows as a plain function (sora.data.stream.stream_rows).

Split selection is checked on generated tables and configs against the promises in its docstring;
the modules' imports are pinned so that the ready dataset never depends on how it is built.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sora.data
from sora.data import DataConfig, StreamingData, prepare_data, train_stream_tokenizer
from sora.data.builders import BUILDERS
from sora.data.builtin import Raw
from sora.data.config import Task
from sora.data.splits import SPLITS, cut_documents, select_rows
from sora.data.stream import stream_rows
from sora.data.table import Table
from sora.errors import SoraError
from tests.data.util import write_csv

FAST = settings(max_examples=40, deadline=None, derandomize=True)
DATA = Path(sora.data.__file__).parent


def table(n: int, n_labels: int = 3, offset: int = 0) -> Table:
    labels = np.arange(offset, offset + n) % n_labels
    return Table(
        {
            "label": labels,
            "group": [f"g{i % 5}" for i in range(n)],
            "split": [("train", "val", "dev", "test", "TRAIN ")[i % 5] for i in range(n)],
        },
        [f"f.csv:{offset + i + 2}" for i in range(n)],
    )


fractions = st.tuples(st.sampled_from([0.0, 0.1, 0.25]), st.sampled_from([0.0, 0.1, 0.3]))
limits = st.none() | st.integers(1, 30)


def config(validation, test, seed, limit, **split) -> DataConfig:
    return DataConfig.model_validate(
        {"source": "x.csv", "limit": limit, "split": {"validation": validation, "test": test, "seed": seed, **split}}
    )


def check_selection(chosen, raw: Raw, limit: int | None, full: bool) -> None:
    """Every split names its table and holds row indices of it; splits of one table never share a row;
    without ``limit`` (``full``) they cover it; with one, none is longer."""
    assert list(chosen) == list(SPLITS)
    by_table: dict[str, list[np.ndarray]] = {}
    for s in chosen.values():
        assert s.table is raw.tables[s.source] and all(0 <= i < len(s.table) for i in s.rows)
        assert limit is None or len(s.rows) <= limit
        by_table.setdefault(s.source, []).append(np.asarray(s.rows))
    for source, parts in by_table.items():
        rows = np.concatenate(parts)
        assert len(set(rows.tolist())) == len(rows)
        if full and limit is None:
            assert sorted(rows.tolist()) == list(range(len(raw.tables[source])))


@FAST
@given(
    n=st.integers(6, 80),
    fr=fractions,
    seed=st.integers(0, 3),
    limit=limits,
    how=st.sampled_from(["random", "stratified", "group", "column"]),
)
def test_one_table_splits_into_disjoint_deterministic_parts(n, fr, seed, limit, how):
    raw = Raw({"all": table(n)})
    labels = {"all": raw.tables["all"].columns["label"]} if how == "stratified" else None
    extra = {"stratify": how == "stratified", "given": how == "column"}
    cfg = config(*fr, seed, limit, **extra)
    columns = {"group": "group"} if how == "group" else {}
    chosen = select_rows(cfg, raw, columns, labels)
    check_selection(chosen, raw, limit, full=True)
    again = select_rows(cfg, raw, columns, labels)
    assert all(np.array_equal(chosen[k].rows, again[k].rows) for k in SPLITS)
    if how == "column":  # names from the column, aliases and case folded; limit takes the first rows
        names = [str(v).strip().lower() for v in raw.tables["all"].columns["split"]]
        wanted = {
            k: [i for i, v in enumerate(names) if {"val": "validation", "dev": "validation"}.get(v, v) == k]
            for k in SPLITS
        }
        assert {k: chosen[k].rows.tolist() for k in SPLITS} == {k: v[:limit] for k, v in wanted.items()}
    if how == "group":  # a group never straddles two splits
        groups = raw.tables["all"].columns["group"]
        owner = {groups[i]: k for k in SPLITS for i in chosen[k].rows}
        assert all(owner[groups[i]] == k for k in SPLITS for i in chosen[k].rows)


@FAST
@given(
    n_train=st.integers(4, 60),
    n_test=st.integers(0, 20),
    fr=fractions,
    seed=st.integers(0, 3),
    limit=limits,
    stratify=st.booleans(),
)
def test_given_splits_are_kept_and_missing_ones_carved_from_train(n_train, n_test, fr, seed, limit, stratify):
    tables = {"train": table(n_train)} | ({"test": table(n_test, offset=1000)} if n_test else {})
    raw = Raw(tables)
    labels = {k: t.columns["label"] for k, t in tables.items()}
    chosen = select_rows(config(*fr, seed, limit, stratify=stratify), raw, {}, labels)
    check_selection(chosen, raw, limit, full=True)
    assert chosen["validation"].source == "train"
    assert chosen["test"].source == ("test" if n_test else "train")
    if n_test:  # a given split, limited or not, keeps its source order
        assert chosen["test"].rows.tolist() == sorted(chosen["test"].rows.tolist())
        assert limit is not None or chosen["test"].rows.tolist() == list(range(n_test))


def test_a_source_that_comes_split_is_not_split_again():
    raw = Raw({"train": table(10), "test": table(4)})
    with pytest.raises(SoraError, match="data.split.given: false, but this source comes split"):
        select_rows(config(0.1, 0.1, 0, None, given=False), raw, {}, None)


@FAST
@given(docs=st.lists(st.text(max_size=40), max_size=8), fr=fractions)
def test_language_modelling_cuts_documents_without_losing_a_character(docs, fr):
    parts = cut_documents(docs, *fr)
    assert "".join("".join(parts[k]) for k in SPLITS) == "".join(docs)
    total = sum(map(len, docs))
    assert sum(map(len, parts["train"])) == int(total * (1 - fr[0] - fr[1]))
    assert all(piece for k in SPLITS for piece in parts[k])  # no empty pieces


def test_every_task_has_one_builder():
    assert set(BUILDERS) == set(typing.get_args(Task))


def test_the_package_still_exports_what_it_did():
    assert set(sora.data.__all__) >= {
        "Prepared",
        "UnseenLabelsWarning",
        "prepare_data",
        "StreamingData",
        "train_stream_tokenizer",
        "DataConfig",
        "SkippedRowsWarning",
    }
    assert sora.data.Prepared.__module__ == "sora.data.prepared"


def _data_imports(module: str) -> set[str]:
    """The sora.data modules that ``module`` (a file of sora/data) imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse((DATA / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sora.data"):
            found.add(node.module.removeprefix("sora.data").lstrip(".") or "")
            found |= {a.name for a in node.names} if node.module == "sora.data" else set()
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("sora.data.") for a in node.names if a.name.startswith("sora.data.")}
    return found


@pytest.mark.parametrize(
    "module,never",
    [
        ("prepared", {"builders", "prepare", "splits", "rows"}),  # the ready dataset does not know how it was built
        ("splits", {"builders", "prepared", "prepare", "rows", "encoding"}),
        ("rows", {"builders", "prepared", "prepare", "splits", "encoding"}),
        ("encoding", {"builders", "prepared", "prepare", "splits", "rows"}),
        ("builders", {"prepare", "stream"}),
        ("stream", {"builders", "prepared", "prepare"}),
    ],
)
def test_the_split_modules_import_downwards_only(module, never):
    assert not _data_imports(module) & never


def test_streamed_rows_need_no_streaming_object(tmp_path):
    """The tokenizer for a stream reads its rows with a plain function: a config that StreamingData
    refuses (classification without label_names) still gives its training rows and a tokenizer."""
    cfg = DataConfig.model_validate(
        {
            "source": str(write_csv(tmp_path / "r.csv")),
            "tokenizer": {"kind": "wordpiece", "vocab_size": 60, "min_frequency": 1},
        }
    )
    with pytest.raises(SoraError, match="label_names"):
        StreamingData(cfg, None)
    rows = list(stream_rows(cfg, "train"))
    assert rows and all(where.startswith(str(tmp_path)) for where, _ in rows)
    assert {where for where, _ in rows}.isdisjoint(where for where, _ in stream_rows(cfg, "validation"))
    assert train_stream_tokenizer(cfg).get_vocab_size() > 10
    named = cfg.model_copy(update={"label_names": ["pos", "neg"]})
    assert list(StreamingData(named, train_stream_tokenizer(named)).rows("train")) == rows


def test_prepared_data_is_what_the_builders_make(tmp_path):
    data = prepare_data(DataConfig.model_validate({"source": str(write_csv(tmp_path / "r.csv"))}))
    assert type(data) is sora.data.Prepared and data.task == "classification" and data.labels == ["neg", "pos"]
    assert sum(len(v) for v in data.splits.values()) == 60
