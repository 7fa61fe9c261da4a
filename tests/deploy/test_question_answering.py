"""Question answering through the Predictor: a (question, context) pair is read in the windows training cut and
answered with a span of its context, the same on torch and onnxruntime; the ONNX graph takes segment ids and is
checked on two-segment inputs (a pair classifier's too); `sora predict` and `sora serve` answer questions.

Exporting costs seconds a graph, so one module fixture exports the tiny models once."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from sora.deploy import Predictor, export_onnx
from sora.deploy.backends import OnnxBackend
from sora.deploy.export import read_export
from sora.deploy.limits import ServeSettings
from sora.deploy.samples import generated_batches
from sora.deploy.server import create_app
from sora.errors import SoraError
from sora.models import load_config
from tests.deploy.serving import running
from tests.deploy.tiny_folders import QUESTIONS, ROME, pair_classifier, span_model
from tests.helpers import run_cli

PAIR_INPUTS = ["input_ids", "valid", "segments"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    qa, pairs = span_model(root), pair_classifier(root)
    export_onnx(qa, root / "qa_onnx", log=lambda _: None)
    export_onnx(pairs, root / "pairs_onnx", log=lambda _: None)
    return {"qa": qa, "qa_onnx": root / "qa_onnx", "pairs_onnx": root / "pairs_onnx"}


def both(folder):
    return Predictor.load(folder, backend="torch"), Predictor.load(folder, backend="onnxruntime")


def same_answers(got: list[dict], want: list[dict]) -> bool:
    spans = [(r["answer"], r["start"], r["end"]) for r in got] == [(r["answer"], r["start"], r["end"]) for r in want]
    return spans and [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-4)


def test_torch_and_onnxruntime_give_the_same_answers_from_the_context(folders):
    t, o = both(folders["qa_onnx"])
    assert (t.task, t.reader.prep) == ("span", {"kind": "windows", "max_len": 24, "stride": 6})  # as trained
    cut = t.reader.read(QUESTIONS[-1]).features.windows
    assert len(cut) > 2 and max(len(w.ids) for w in cut) <= 24  # the long context: several windows
    answers = t.predict(QUESTIONS, batch_size=4)  # batch_size counts windows: the long context's go alone
    assert same_answers(o.predict(QUESTIONS, batch_size=4), answers)
    for question, found in zip(QUESTIONS, answers):
        assert found["answer"].strip() and question["context"][found["start"] : found["end"]] == found["answer"]
    alone = [t.predict([q])[0] for q in QUESTIONS]  # a question's answer does not depend on its batch
    assert same_answers(alone, answers)


def test_a_bad_question_is_one_line_and_the_rest_are_answered(folders):
    p = Predictor.load(folders["qa"], backend="torch")
    bad = ["just a text", {"question": "Who?"}, {"question": " ", "context": ROME}, {"question": "Who?", "context": 3}]
    results = p.predict([QUESTIONS[0], *bad], errors="return")
    assert results[0]["answer"] and [r["error"] for r in results[1:]] == [
        'expected {"question": ..., "context": ...}, got str',
        "no 'context' field",
        "empty question",
        "'context' holds int, not a text",
    ]
    with pytest.raises(SoraError, match="^input 1: expected"):
        p.predict([QUESTIONS[0], "just a text"])
    with pytest.raises(SoraError, match="put a single one in a list"):
        p.predict(QUESTIONS[0])


def test_the_export_takes_segments_and_is_checked_on_two_segment_inputs(folders):
    export = read_export(folders["qa_onnx"])
    assert export["graphs"]["model"]["inputs"] == PAIR_INPUTS and export["graphs"]["model"]["outputs"] == ["logits"]
    assert export["parity"]["inputs"] == "generated" and export["parity"]["fp32_max_abs_diff"]["model"] <= 1e-4
    batches = generated_batches(load_config(folders["qa"]))
    assert all(set(b["segments"][b["valid"]].tolist()) == {0, 1} for b in batches)  # both texts of a pair
    onnx = OnnxBackend(folders["qa_onnx"], export["graphs"], [], 16)
    feeds = {"input_ids": batches[0]["inputs"], "valid": batches[0]["valid"], "segments": batches[0]["segments"]}
    logits = onnx.forward(feeds)["logits"]
    assert logits.shape == (*feeds["input_ids"].shape, 2)
    one_text = onnx.forward({**feeds, "segments": torch.zeros_like(feeds["segments"])})["logits"]
    assert not torch.allclose(logits, one_text)  # the graph reads the segments


def test_a_pair_classifier_exports_segments_too_and_answers_the_same(folders):
    assert read_export(folders["pairs_onnx"])["graphs"]["model"]["inputs"] == PAIR_INPUTS
    t, o = both(folders["pairs_onnx"])
    texts = ["Rome is a city", "people like it very much", "Which river?"]
    for a, b in zip(t.predict(texts), o.predict(texts)):  # one text: segment 0, as torch reads it without segments
        assert a["label"] == b["label"] and a["scores"] == pytest.approx(b["scores"], abs=1e-5)


def test_serve_answers_questions_and_names_a_wrong_input(folders):
    p = Predictor.load(folders["qa"], backend="torch")
    expected = p.predict(QUESTIONS[:2])
    with running(create_app(p, ServeSettings(max_chars=200))) as url:
        health = httpx.get(f"{url}/healthz").json()
        answered = httpx.post(f"{url}/v1/predict", json={"inputs": QUESTIONS[:2]})
        wrong = httpx.post(f"{url}/v1/predict", json={"inputs": [QUESTIONS[0], "a text"]})
        empty = httpx.post(f"{url}/v1/predict", json={"inputs": [{"question": "", "context": ROME}]})
        long = httpx.post(f"{url}/v1/predict", json={"inputs": [QUESTIONS[-1]]})
        attention = httpx.post(f"{url}/v1/attention", json=QUESTIONS[0])
        no_context = httpx.post(f"{url}/v1/attention", json={"question": "Who?"})
    assert (health["task"], health["input"], health["generate"]) == ("span", "text", False)
    assert answered.status_code == 200 and same_answers(answered.json()["predictions"], expected)
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "inputs", 1]
    assert wrong.json()["detail"][0]["msg"].startswith("inputs[1]: this model answers questions: send {")
    assert empty.status_code == 422 and empty.json()["detail"][0]["msg"] == "inputs[0]: empty question"
    assert long.status_code == 422 and long.json()["detail"][0]["loc"] == ["body", "inputs", 0, "context"]
    tokens = attention.json()["tokens"]
    assert attention.status_code == 200 and tokens[0] == "[CLS]" and len(tokens) <= 24  # the first window
    assert no_context.status_code == 422


def test_sora_predict_answers_records_on_onnxruntime_and_names_a_bad_line(folders, tmp_path, capsys):
    rows = [json.dumps({"q": QUESTIONS[0]["question"], "text": ROME}), json.dumps({"q": "no paragraph"}), "{bad"]
    rows.append(json.dumps({"q": QUESTIONS[1]["question"], "text": QUESTIONS[1]["context"]}))
    (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "answers.jsonl"
    columns = ("--question-column", "q", "--context-column", "text")
    options = ("--input", tmp_path / "in.jsonl", "--output", out, *columns, "--backend", "onnxruntime")
    code, _, err = run_cli(capsys, "predict", folders["qa_onnx"], *options, "--batch-size", "2")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 0 and "predicted 2 of 4 records (2 failed) with onnxruntime" in err
    assert [line["line"] for line in lines] == [1, 2, 3, 4]
    assert lines[1]["error"] == "no column 'text' (this row has 'q'); choose one with --context-column"
    assert lines[2]["error"].startswith("not valid JSON")
    expected = Predictor.load(folders["qa_onnx"], backend="onnxruntime").predict(QUESTIONS[:2])
    assert [lines[0]["input"], lines[3]["input"]] == [q["question"] for q in QUESTIONS[:2]]
    assert same_answers([lines[0], lines[3]], expected)
    (tmp_path / "in.txt").write_text("Which river?\n")
    code, _, err = run_cli(capsys, "predict", folders["qa"], "--input", tmp_path / "in.txt", "--output", tmp_path / "x")
    assert code == 2 and "a question-answering model reads CSV/TSV, JSONL or Parquet rows" in err
