"""A saved question-answering model answers with a span of the paragraph: `sora generate --question --context`,
the Predictor over a paragraph longer than a window, `sora predict` over records (all one code path)."""

from __future__ import annotations

import json

import torch

from sora.data import DataConfig, prepare_data
from sora.deploy import Predictor
from sora.models import ModelConfig, build_model, save_model
from tests.helpers import run_cli
from tests.qa.fixture import use_fake_bigbench

CHOOSE = "choose one with --context-column"
CONTEXT = "Rome is a city number 7. The river Tiber flows through Rome and people like it very much."


def saved_span_model(tmp_path, monkeypatch):
    use_fake_bigbench(monkeypatch, tmp_path)
    cfg = {"dataset": "squad", "tokenizer": {"kind": "wordpiece", "vocab_size": 300, "min_frequency": 1}}
    data = prepare_data(DataConfig(**cfg, max_len=24, stride=6))
    config = ModelConfig(
        arch="span_extractor", **data.model_fields(), d_model=16, encoder={"n_layers": 1, "n_heads": 2, "d_ff": 32},
        max_len=24, dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    meta = {"provenance": {"data_config": data.config.model_dump(mode="json")}}
    return save_model(build_model(config), tmp_path / "qa", tokenizer=data.tokenizer, meta=meta)


def test_generate_prints_a_span_of_the_paragraph(tmp_path, monkeypatch, capsys):
    folder = saved_span_model(tmp_path, monkeypatch)
    code, out, _ = run_cli(
        capsys, "generate", folder, "--question", "Which river flows through Rome?", "--context", CONTEXT
    )
    answer = out.strip()
    assert code == 0 and answer and answer in CONTEXT


def test_a_long_paragraph_is_read_in_windows_and_the_answer_keeps_its_characters(tmp_path, monkeypatch):
    predictor = Predictor.load(saved_span_model(tmp_path, monkeypatch), backend="torch")
    long_context = " ".join([CONTEXT] * 6)  # far longer than the 24-token windows (stride 6, from provenance)
    question = {"question": "Which river?", "context": long_context}
    assert len(predictor.reader.read(question).features.windows) > 2
    (found,) = predictor.predict([question])
    assert found["answer"] == long_context[found["start"] : found["end"]] and found["answer"].strip()


def test_a_question_without_a_paragraph_is_one_line(tmp_path, monkeypatch, capsys):
    folder = saved_span_model(tmp_path, monkeypatch)
    code, _, err = run_cli(capsys, "generate", folder, "--question", "Which river?")
    assert code == 2 and "--context" in err and "Traceback" not in err


def test_predict_answers_each_record_and_names_a_bad_one(tmp_path, monkeypatch, capsys):
    folder = saved_span_model(tmp_path, monkeypatch)
    records = tmp_path / "questions.jsonl"
    records.write_text(
        json.dumps({"question": "Which river flows through Rome?", "context": CONTEXT}) + "\n"
        + json.dumps({"question": "no paragraph"}) + "\n"
    )  # fmt: skip
    code, _, _ = run_cli(capsys, "predict", folder, "--input", records, "--output", tmp_path / "answers.jsonl")
    first, second = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert code == 0 and CONTEXT[first["start"] : first["end"]] == first["answer"]
    assert (first["line"], first["input"]) == (1, "Which river flows through Rome?")
    assert second == {"line": 2, "error": f"no column 'context' (this row has 'question'); {CHOOSE}"}
