"""``sora predict`` on every input kind: one JSON line per record in input order, a bad record written as an
error at its line while the rest run, the summary's counts, and the rules of --output."""

from __future__ import annotations

import json

import pytest

from sora.deploy import Predictor
from sora.deploy.records import read_records
from sora.deploy.stream import predict_stream
from tests.deploy.tiny_folders import (
    RATE,
    audio_model,
    char_lm,
    clips,
    image_classifier,
    images,
    text_classifier,
    wav_bytes,
    write_png,
)
from tests.helpers import run_cli

TEXTS = ["a fine film", "dull", "great acting and a smart script", "boring plot"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_cli")
    return {
        "classifier": text_classifier(root),
        "lm": char_lm(root),
        "vision": image_classifier(root),
        "ctc": audio_model(root, "ctc"),
    }


def predict(capsys, model, input_, output, *options):
    answer = run_cli(capsys, "predict", model, "--input", input_, "--output", output, "--backend", "torch", *options)
    try:
        return answer, [json.loads(line) for line in output.read_text().splitlines()]
    except (OSError, ValueError):  # no output, or not one this command wrote
        return answer, None


def labels_of(model, inputs):
    return [r["label"] for r in Predictor.load(model, backend="torch").predict(inputs)]


def test_text_lines_csv_and_jsonl(models, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    (tmp_path / "in.csv").write_text("id,review\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(TEXTS)))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    expected = labels_of(models["classifier"], TEXTS)
    for name, options, first_line in (("in.txt", (), 1), ("in.csv", ("--column", "review"), 2), ("in.jsonl", (), 1)):
        answer, lines = predict(capsys, models["classifier"], tmp_path / name, tmp_path / f"{name}.out", *options)
        assert answer.code == 0, answer.err
        assert [line["line"] for line in lines] == list(range(first_line, first_line + 4))
        assert [line["input"] for line in lines] == TEXTS and [line["label"] for line in lines] == expected
        assert "predicted 4 of 4 records (0 failed)" in answer.err


def test_a_bad_record_in_the_middle_is_written_at_its_line_and_the_rest_run(models, tmp_path, capsys):
    rows = [json.dumps({"text": "a fine film"}), "{not json", json.dumps({"text": ""}), json.dumps({"review": "x"})]
    rows += [json.dumps({"text": "dull"})]
    (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n")
    answer, lines = predict(capsys, models["classifier"], tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert answer.code == 0
    assert [(line["line"], "error" in line) for line in lines] == [(1, 0), (2, 1), (3, 1), (4, 1), (5, 0)]
    assert lines[1]["error"].startswith("not valid JSON") and lines[2]["error"] == "empty text"
    assert lines[3]["error"].startswith("no column 'text'")
    assert [lines[0]["label"], lines[4]["label"]] == labels_of(models["classifier"], ["a fine film", "dull"])
    assert "predicted 2 of 5 records (3 failed)" in answer.err and "first failure: line 2: not valid JSON" in answer.err


def test_an_lm_continues_each_line(models, tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("the cat\nthe dog sat\n")
    answer, lines = predict(capsys, models["lm"], tmp_path / "prompts.txt", tmp_path / "out.jsonl")
    expected = Predictor.load(models["lm"], backend="torch").predict(["the cat", "the dog sat"])
    assert answer.code == 0 and [line["text"] for line in lines] == [r["text"] for r in expected]


def test_a_folder_of_images_one_record_per_file_sorted_by_name(models, tmp_path, capsys):
    pixels = images(3)
    folder = tmp_path / "photos"
    (folder / "b").mkdir(parents=True)
    for name, x in zip(["b/z.png", "a.png", "c.png"], pixels):
        write_png(folder / name, x)
    (folder / "notes.txt").write_text("not an image")  # other files are not records
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    answer, lines = predict(capsys, models["vision"], folder, tmp_path / "out.jsonl")
    assert answer.code == 0 and [line["file"] for line in lines] == ["a.png", "b/z.png", "broken.png", "c.png"]
    assert lines[2]["error"].startswith(f"{folder / 'broken.png'}: not a readable image")
    assert [lines[i]["label"] for i in (0, 1, 3)] == labels_of(models["vision"], [pixels[1], pixels[0], pixels[2]])
    assert "predicted 3 of 4 records (1 failed)" in answer.err


def test_a_folder_of_wav_files_gives_transcripts(models, tmp_path, capsys):
    waves = clips(3)
    for i, w in enumerate(waves):
        (tmp_path / "clips").mkdir(exist_ok=True)
        (tmp_path / "clips" / f"{i}.wav").write_bytes(wav_bytes(w))
    answer, lines = predict(capsys, models["ctc"], tmp_path / "clips", tmp_path / "out.jsonl")
    expected = Predictor.load(models["ctc"], backend="torch").predict([(w, RATE) for w in waves])
    assert answer.code == 0 and [line["file"] for line in lines] == ["0.wav", "1.wav", "2.wav"]
    assert [line["transcript"] for line in lines] == [r["transcript"] for r in expected]


def test_output_needs_force_to_replace_and_is_never_half_written(models, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a fine film\n")
    out = tmp_path / "out.jsonl"
    out.write_text("mine\n")
    answer, _ = predict(capsys, models["classifier"], tmp_path / "in.txt", out)
    assert "exists; add --force to replace it" in answer.error() and out.read_text() == "mine\n"
    answer, lines = predict(capsys, models["classifier"], tmp_path / "in.txt", out, "--force")
    assert answer.code == 0 and len(lines) == 1
    assert "a folder" in predict(capsys, models["classifier"], tmp_path / "in.txt", tmp_path)[0].error()
    (tmp_path / "empty.txt").write_text("\n\n")
    answer, _ = predict(capsys, models["classifier"], tmp_path / "empty.txt", tmp_path / "new.jsonl")
    assert "no records to predict" in answer.error() and not (tmp_path / "new.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "in.txt", "out.jsonl"]  # no staging left
    answer, _ = predict(capsys, models["vision"], tmp_path / "in.txt", tmp_path / "img.jsonl")
    assert "an image model reads a folder of images" in answer.error()


def test_nothing_readable_is_an_error_after_the_output_says_why(models, tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text("{bad\n[1]\n")
    answer, lines = predict(capsys, models["classifier"], tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert "none of its 2 records could be predicted" in answer.error() and len(lines) == 2


def test_records_stream_in_chunks_in_input_order(models, tmp_path):
    (tmp_path / "in.txt").write_text("\n".join(TEXTS + ["", "dull"]) + "\n")
    p = Predictor.load(models["classifier"], backend="torch")
    sizes = []
    with open(tmp_path / "a.jsonl", "w") as out:
        counts = predict_stream(p, read_records(tmp_path / "in.txt", "text"), out, chunk=2, progress=sizes.append)
    with open(tmp_path / "b.jsonl", "w") as out:
        predict_stream(p, read_records(tmp_path / "in.txt", "text"), out)
    assert sizes == [2, 2, 1] and (counts.predicted, counts.failed) == (5, 0)  # the blank line is no record
    a = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [line["line"] for line in a] == [1, 2, 3, 4, 6] and [x["label"] for x in a] == [x["label"] for x in b]
