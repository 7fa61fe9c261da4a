"""The Predictor on an export folder: onnxruntime gives what torch gives for every assembly (the forward
graph, the LM's and the seq2seq decoder's ``decoder_step`` with its KV cache), and "auto" measures both.

Exporting costs seconds a graph, so one module fixture exports small (one-layer) models once."""

from __future__ import annotations

import json

import pytest

from sora.deploy import Predictor, export_onnx
from tests.deploy.tiny_folders import RATE, audio_model, char_lm, clips, text_classifier, translator
from tests.helpers import run_cli

ONE = {"n_layers": 1, "n_heads": 2, "d_ff": 32}
TEXTS = ["a fine film", "dull", "great acting and a smart script", "boring plot flat acting"]
PROMPTS = ["the cat", "the dog sat on the mat. the cat sat", "the"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    folders = {
        "classifier": text_classifier(root, encoder=ONE),
        "lm": char_lm(root, decoder=ONE),
        "translator": translator(root, encoder=ONE, decoder={**ONE, "cross_heads": 2}),
        "ctc": audio_model(root, "ctc", encoder=ONE),
    }
    for name, folder in folders.items():
        export_onnx(folder, root / f"{name}_onnx", log=lambda _: None)
    export_onnx(folders["classifier"], root / "classifier_int8", int8=True, log=lambda _: None)
    return {name: root / f"{name}_onnx" for name in folders} | {
        "model_folder": folders["classifier"],
        "classifier_int8": root / "classifier_int8",
    }


def both(folder):
    return Predictor.load(folder, backend="torch"), Predictor.load(folder, backend="onnxruntime")


def test_classification_and_ctc_agree_on_both_backends(exported):
    t, o = both(exported["classifier"])
    assert (t.backend, o.backend) == ("torch", "onnxruntime")
    for a, b in zip(t.predict(TEXTS, batch_size=3), o.predict(TEXTS, batch_size=3)):
        assert a["label"] == b["label"] and a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    t, o = both(exported["ctc"])
    pairs = [(w, RATE) for w in clips()]
    assert t.predict(pairs, batch_size=4) == o.predict(pairs, batch_size=4)


def test_generation_on_the_decoder_step_graph_equals_torchs(exported):
    t, o = both(exported["lm"])
    assert t.predict(PROMPTS, max_new_tokens=30) == o.predict(PROMPTS, max_new_tokens=30)  # slides past max_len 24
    for options in ({"temperature": 0}, {"temperature": 0.9, "top_p": 0.9, "seed": 7}):
        assert list(t.generate("the cat", 20, **options)) == list(o.generate("the cat", 20, **options))
    t, o = both(exported["translator"])
    sources = ["the cat", "a cat sat", "the mat"]
    assert t.predict(sources, batch_size=2) == o.predict(sources, batch_size=2)
    assert list(t.generate("the dog", temperature=0)) == list(o.generate("the dog", temperature=0))


def test_auto_measures_both_backends_and_keeps_the_faster(exported):
    p = Predictor.load(exported["classifier"])
    assert set(p.load_timings) == {"torch", "onnxruntime"} and all(ms > 0 for ms in p.load_timings.values())
    assert p.backend == min(p.load_timings, key=p.load_timings.get)
    plain = Predictor.load(exported["model_folder"])  # no graphs: torch, nothing measured
    assert (plain.backend, plain.load_timings) == ("torch", {})
    int8 = Predictor.load(exported["classifier_int8"])  # torch has only the fp32 weights: not a like-for-like race
    assert (int8.backend, int8.load_timings) == ("onnxruntime", {})
    onnx = Predictor.load(exported["classifier"], backend="onnxruntime")
    assert [layer["layer"] for layer in onnx.attention("a fine film")["layers"]] == [0]  # from the torch model


def test_sora_predict_runs_an_export_on_onnxruntime(exported, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    code, _, err = run_cli(
        capsys, "predict", exported["classifier"], "--input", tmp_path / "in.txt", "--output", tmp_path / "o.jsonl",
        "--backend", "onnxruntime",
    )  # fmt: skip
    assert code == 0 and "predicted 4 of 4 records (0 failed) with onnxruntime" in err
    lines = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    expected = Predictor.load(exported["classifier"], backend="onnxruntime").predict(TEXTS)
    assert [line["label"] for line in lines] == [r["label"] for r in expected]
