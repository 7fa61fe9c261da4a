"""The Predictor on the torch backend: every task and input kind gives what the model itself gives, in input
order despite the sorting into batches, and a bad item is one line in its place."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sora.data.preprocess import images_to_inputs, waves_to_inputs
from sora.deploy import Predictor
from sora.deploy.decoding import text_pieces
from sora.errors import SoraError
from sora.models import load_meta, load_model, load_tokenizer
from sora.tasks import CTC, greedy_ctc
from tests.deploy.tiny_folders import (
    RATE,
    audio_model,
    char_lm,
    clips,
    image_classifier,
    images,
    text_classifier,
    translator,
    wav_bytes,
    write_png,
)

TEXTS = ["a fine film", "dull", "great acting and a smart script, lovely and warm", "boring plot", "a mess"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("predictor")
    return {
        "classifier": text_classifier(root),
        "lm": char_lm(root),
        "translator": translator(root),
        "vision": image_classifier(root),
        "audio": audio_model(root, "classification"),
        "ctc": audio_model(root, "ctc"),
    }


def softmax_of(model, ids: list[int]) -> list[float]:
    with torch.no_grad():
        return model(torch.tensor([ids])).softmax(-1)[0].tolist()


def test_text_classification_gives_the_models_scores_in_input_order(folders):
    p = Predictor.load(folders["classifier"], backend="torch")
    assert (p.task, p.input, p.backend, p.labels) == ("classification", "text", "torch", ["neg", "pos"])
    assert p.load_timings == {}  # torch asked for: nothing measured
    model, tokenizer = load_model(folders["classifier"]), load_tokenizer(folders["classifier"])
    results = p.predict(TEXTS, batch_size=2)  # sorted by length into batches, returned in input order
    for text, result in zip(TEXTS, results):
        expected = softmax_of(model, tokenizer.encode(text).ids)
        assert result["scores"] == pytest.approx(dict(zip(["neg", "pos"], expected)), abs=1e-5)
        assert result["label"] == ["neg", "pos"][int(np.argmax(expected))]
        assert result["score"] == pytest.approx(max(expected))


def test_a_bad_item_is_one_line_in_its_place_or_raised(folders):
    p = Predictor.load(folders["classifier"], backend="torch")
    out = p.predict(["a fine film", "", 5, "   ", "dull"], errors="return")
    assert [r.get("error") for r in out] == [None, "empty text", "expected a text, got int", "empty text", None]
    alone = p.predict(["a fine film"])[0]
    assert out[0]["label"] == alone["label"] and out[0]["scores"] == pytest.approx(alone["scores"])
    with pytest.raises(SoraError, match="^input 1: empty text$"):
        p.predict(["fine", ""])
    with pytest.raises(SoraError, match="list of inputs"):
        p.predict("a fine film")


def test_image_arrays_and_png_files_give_the_models_prediction(folders, tmp_path):
    p = Predictor.load(folders["vision"], backend="torch")
    pixels = images(5)
    model, prep = load_model(folders["vision"]), load_meta(folders["vision"])["preprocessing"]
    with torch.no_grad():
        expected = model(images_to_inputs(pixels, prep)).softmax(-1)
    from_arrays = p.predict(list(pixels), batch_size=2)
    from_files = p.predict([write_png(tmp_path / f"{i}.png", x) for i, x in enumerate(pixels)])
    for row, a, f in zip(expected.tolist(), from_arrays, from_files):
        assert list(a["scores"].values()) == pytest.approx(row, abs=1e-5) and a["scores"] == pytest.approx(f["scores"])
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    bad = p.predict([pixels[0][:4], tmp_path / "bad.png", pixels[0]], errors="return")
    assert bad[0]["error"] == "the image is 4x8x1; the model takes 8x8x1 pixels"
    assert bad[1]["error"].startswith(f"{tmp_path / 'bad.png'}: not a readable image")
    assert "error" not in bad[2]


def test_wav_files_and_arrays_give_the_models_prediction(folders, tmp_path):
    p = Predictor.load(folders["audio"], backend="torch")
    assert (p.task, p.input) == ("classification", "audio")
    waves = clips()
    model, prep = load_model(folders["audio"]), load_meta(folders["audio"])["preprocessing"]
    with torch.no_grad():  # each clip alone: a clip's features do not depend on the batch it is in
        expected = torch.cat([model(*waves_to_inputs([w], RATE, prep)).softmax(-1) for w in waves])
    paths = []
    for i, w in enumerate(waves):
        paths.append(tmp_path / f"{i}.wav")
        paths[-1].write_bytes(wav_bytes(w))
    from_files = p.predict(paths, batch_size=4)
    from_arrays = p.predict([(w, RATE) for w in waves], batch_size=3)
    for row, f, a in zip(expected.tolist(), from_files, from_arrays):
        assert list(f["scores"].values()) == pytest.approx(row, abs=1e-5)
        assert f["scores"] == pytest.approx(a["scores"], abs=1e-6)
    bad = p.predict([(np.zeros(0), RATE), (waves[0], 0), tmp_path / "missing.wav"], errors="return")
    assert bad[0]["error"] == "the clip is empty"
    assert bad[1]["error"] == "expected a WAV file or a (waveform, sample_rate) pair, got tuple"  # a rate of 0
    assert bad[2]["error"].startswith(f"{tmp_path / 'missing.wav'}: cannot read")


def test_ctc_gives_the_greedy_transcript(folders):
    p = Predictor.load(folders["ctc"], backend="torch")
    assert (p.task, p.labels) == ("ctc", ["<blank>", "a", "b"])
    waves = clips()
    model, prep = load_model(folders["ctc"]), load_meta(folders["ctc"])["preprocessing"]
    expected = []
    for w in waves:
        mels, valid = waves_to_inputs([w], RATE, prep)
        with torch.no_grad():
            logits = model(mels, valid)
        expected += [CTC(p.labels).text(ids) for ids in greedy_ctc(logits, model.output_valid(mels, valid).sum(1))]
    assert [r["transcript"] for r in p.predict([(w, RATE) for w in waves], batch_size=4)] == expected


def test_lm_continuation_and_stream_equal_the_models_greedy_generate(folders):
    p = Predictor.load(folders["lm"], backend="torch")
    model, tokenizer = load_model(folders["lm"]), load_tokenizer(folders["lm"])
    prompts = ["the cat", "a dog sat on the mat. the cat sat on", "the", "the dog"]  # the second outgrows max_len
    results = p.predict(prompts, batch_size=2, max_new_tokens=12)
    for prompt, result in zip(prompts, results):
        ids = tokenizer.encode(prompt, add_special_tokens=False).ids
        out = model.generate(torch.tensor([ids]), 12)[0].tolist()
        whole, start = tokenizer.decode(out, skip_special_tokens=True), tokenizer.decode(ids)
        assert result["text"] == whole[len(start) :]
        assert "".join(p.generate(prompt, max_new_tokens=12, temperature=0)) == result["text"]
    sampled = ["".join(p.generate("the", 10, temperature=0.9, top_k=5, seed=3)) for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seed repeats a sample


def test_streamed_pieces_are_whole_characters_and_words():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    byte_level = Tokenizer(models.BPE({c: i for i, c in enumerate(alphabet)}, []))  # one token per byte
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    byte_level.decoder = decoders.ByteLevel()
    text = "héllo 日本"
    ids = byte_level.encode(text).ids
    pieces = list(text_pieces(byte_level, [], ids))
    assert "".join(pieces) == text and not any("\ufffd" in piece for piece in pieces)
    assert "日" in pieces and len(ids) > len(pieces)  # three byte tokens came out as one character
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "un": 1, "##believ": 2, "##able": 3, "film": 4}))
    wordpiece.pre_tokenizer, wordpiece.decoder = pre_tokenizers.BertPreTokenizer(), decoders.WordPiece()
    assert "".join(text_pieces(wordpiece, [4], [1, 2, 3])) == " unbelievable"


def test_seq2seq_translation_equals_the_models_generate(folders):
    p = Predictor.load(folders["translator"], backend="torch")
    model, tokenizer = load_model(folders["translator"]), load_tokenizer(folders["translator"])
    sources = ["the cat", "a cat sat on the mat", "the dog"]
    for beam in (1, 2):
        results = p.predict(sources, batch_size=2, max_new_tokens=8, beam=beam)
        for source, result in zip(sources, results):
            out = model.generate(torch.tensor([tokenizer.encode(source).ids]), 8, beam=beam)[0]
            assert result["translation"] == tokenizer.decode(out, skip_special_tokens=True)
    streamed = "".join(p.generate("the cat", 8, temperature=0))
    assert streamed == p.predict(["the cat"], max_new_tokens=8)[0]["translation"]


def test_attention_names_every_head_with_its_pattern(folders, tmp_path):
    p = Predictor.load(folders["classifier"], backend="torch")
    seen = p.attention("a fine film")
    tokens = load_tokenizer(folders["classifier"]).encode("a fine film").tokens
    assert seen["tokens"] == tokens and [layer["layer"] for layer in seen["layers"]] == [0, 1]
    names = [h["name"] for layer in seen["layers"] for h in layer["heads"]]
    assert names == [f"layers.{i}.attn.head.{h}" for i in range(2) for h in range(4)]
    pattern = np.array(seen["layers"][1]["heads"][2]["pattern"])
    assert pattern.shape == (len(tokens), len(tokens)) and np.allclose(pattern.sum(1), 1, atol=1e-5)
    json.dumps(seen)  # what a server sends
    pruned = Predictor.load(text_classifier(tmp_path, encoder={"n_layers": 2, "n_heads": [0, 2], "d_ff": 64}))
    assert [(layer["layer"], len(layer["heads"])) for layer in pruned.attention("dull")["layers"]] == [(1, 2)]
    vision = Predictor.load(folders["vision"]).attention(images(1)[0])
    assert vision["tokens"] == ["[CLS]"] + [f"patch {i}" for i in range(4)]


def test_an_imported_vits_image_preprocessing_is_read_as_hugging_face_means_it(folders, tmp_path):
    import shutil

    shutil.copytree(folders["vision"], tmp_path / "vit")
    meta = json.loads((tmp_path / "vit" / "meta.json").read_text())
    hf = {
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "image_mean": [0.5],
        "image_std": [0.25],
        "size": {"height": 8},
    }
    (tmp_path / "vit" / "meta.json").write_text(json.dumps({**meta, "preprocessing": None, "image_preprocessing": hf}))
    pixels = images(2)
    with torch.no_grad():  # what a ViTImageProcessor gives: (x / 255 - mean) / std
        x = (torch.from_numpy(pixels).float()[:, None] / 255 - 0.5) / 0.25
        expected = load_model(tmp_path / "vit")(x).softmax(-1)
    got = Predictor.load(tmp_path / "vit").predict(list(pixels))
    assert [list(r["scores"].values()) for r in got] == [pytest.approx(row, abs=1e-5) for row in expected.tolist()]


def test_a_folder_without_what_its_input_needs_is_one_error_at_load(folders, tmp_path):
    import shutil

    shutil.copytree(folders["vision"], tmp_path / "vision")
    meta = json.loads((tmp_path / "vision" / "meta.json").read_text())
    (tmp_path / "vision" / "meta.json").write_text(json.dumps({**meta, "preprocessing": None}))
    with pytest.raises(SoraError, match='meta.json: no "preprocessing"'):
        Predictor.load(tmp_path / "vision")
    shutil.copytree(folders["classifier"], tmp_path / "text")
    (tmp_path / "text" / "tokenizer.json").unlink()
    with pytest.raises(SoraError, match="no tokenizer.json"):
        Predictor.load(tmp_path / "text")
    with pytest.raises(SoraError, match="without ONNX graphs"):
        Predictor.load(folders["classifier"], backend="onnxruntime")
    with pytest.raises(SoraError, match="backend 'tensorrt'"):
        Predictor.load(folders["classifier"], backend="tensorrt")
