"""The report shows heads on their own modality: CLS attention over the image, attention along a spectrogram's
time axis, and cross-attention as a source/target word alignment. Tiny untrained model folders (as training
saves them, meta.json preprocessing included), analysed on their own data."""

import json
import re

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from sora.analyze import analyze_model
from sora.analyze.alignment import alignment_matrices, readable_tokens
from sora.analyze.overlays import attention_rollout, display_image, head_maps, upsample
from sora.data import prepare_data
from sora.models import load_meta, load_tokenizer
from tests.deploy.tiny_folders import PAIRS, audio_model, image_classifier, translator

ATTENTION_ONLY = {"methods": ["attention"], "split": "train", "batch_size": 12, "max_batches": 1}


def analysed(folder, out, **settings) -> tuple[dict, str]:
    """Analyse a saved tiny model on the data it was made from; analysis.json and report.html."""
    data = prepare_data(load_meta(folder)["provenance"]["data_config"], tokenizer=load_tokenizer(folder))
    batches = list(data.loader("train", 12))
    analyze_model(folder, batches, {**ATTENTION_ONLY, **settings}, out, task=data.task, labels=data.labels)
    return json.loads((out / "analysis.json").read_text()), (out / "report.html").read_text()


def referenced(html: str) -> set[str]:
    return set(re.findall(r'src="([^"]+)"', html))


def test_a_vit_report_draws_cls_attention_over_each_image(tmp_path):
    result, html = analysed(image_classifier(tmp_path), tmp_path / "an", n_examples=3)
    examples = result["examples"]
    assert [e["kind"] for e in examples] == ["image"] * 3
    assert len({e["truth"] for e in examples}) == 3  # one example per class where the batch has them
    for i, e in enumerate(examples):
        assert (tmp_path / "an" / f"overlay_{i}.png").is_file() and f"overlay_{i}.png" in referenced(html)
        assert "true: " in e["caption"] and "predicted: " in e["caption"]
        maps = np.array(e["cls_attention"])  # (layers, heads, 2, 2): 8x8 pixels in 4x4 patches
        assert maps.shape == (2, 4, 2, 2) and (maps > 0).all() and (maps.sum((2, 3)) < 1 + 1e-3).all()
        assert np.array(e["rollout"]).shape == (2, 2, 2)
    assert "heat map over the image" in html
    assert all((tmp_path / "an" / f).is_file() for f in referenced(html))


def test_cls_attention_lands_on_the_pixels_of_its_patch():
    # 4 patches (2 x 2 grid) + CLS; head 0's CLS reads patch 2 only (bottom left), head 1 spreads evenly
    pattern = np.full((2, 5, 5), 0.2)
    pattern[0, 0] = [0, 0, 0, 1, 0]
    maps = head_maps(pattern, has_cls=True, grid=2)
    assert maps[0].tolist() == [[0, 0], [1, 0]] and np.allclose(maps[1], 0.2)
    heat = upsample(maps[0], patch=3)  # (6, 6): the patch's value over its 3 x 3 pixels
    assert heat.shape == (6, 6) and heat[3:, :3].min() == 1 and heat.sum() == 9
    rollout = attention_rollout([pattern, pattern], has_cls=True, grid=2)
    assert len(rollout) == 2 and rollout[0][1, 0] > rollout[0][0, 0]  # the residual half keeps CLS on itself
    assert 0 < rollout[1].sum() < 1


def test_display_image_undoes_the_training_normalisation():
    rgb = np.stack([np.full((4, 4), 0.0), np.full((4, 4), 1.0), np.linspace(-1, 1, 16).reshape(4, 4)])
    shown = display_image(rgb, {"mean": [10.0, 20.0, 0.0], "std": [1.0, 1.0, 10.0]})
    assert shown.shape == (4, 4, 3) and shown.min() == 0 and shown.max() == 1
    assert np.allclose(shown[..., 1], 1) and shown[0, 0, 0] > shown[0, 0, 2]  # 21 brightest, 10 > -10
    grey = display_image(np.arange(16.0).reshape(1, 4, 4))
    assert grey.shape == (4, 4) and grey[0, 0] == 0 and grey[3, 3] == 1


@pytest.mark.parametrize("task", ["classification", "ctc"])
def test_an_audio_report_draws_attention_against_the_spectrogram(tmp_path, task):
    result, html = analysed(audio_model(tmp_path, task), tmp_path / "an", n_examples=2)
    for i, e in enumerate(result["examples"]):
        assert e["kind"] == "audio" and e["patch_frames"] == 4
        assert f"overlay_{i}.png" in referenced(html) and (tmp_path / "an" / f"overlay_{i}.png").is_file()
        frames = [np.array(layer) for layer in e["frame_attention"]]  # per layer (heads, time patches)
        assert len(frames) == 2 and all(f.shape[0] == 4 and f.shape[1] >= 1 for f in frames)
        if task == "ctc":  # the transcript, and what the model's best path says
            assert e["truth"] in ("“ab”", "“ba”", "“abba”") and e["prediction"] is not None
        else:
            assert e["truth"] in ("high", "low") and (frames[0].sum(-1) < 1 + 1e-3).all()
    assert "log-mel spectrogram" in html


def test_a_translation_report_aligns_source_and_target_words(tmp_path):
    result, html = analysed(translator(tmp_path), tmp_path / "an", n_examples=1)
    example = result["examples"][0]
    assert example["kind"] == "translation"
    reference, own = example["alignments"]
    assert (reference["title"], own["title"]) == ("reference translation", "model translation")
    sources = {s.replace(" ", "␣") for s, _ in PAIRS}
    assert "".join(reference["source"]).removesuffix("[EOS]") in sources  # characters, spaces made visible
    targets = {t.replace(" ", "␣") for _, t in PAIRS}
    assert "".join(reference["target"]).removesuffix("[EOS]") in targets  # what each row produces
    for a in (reference, own):
        for mean in a["mean"]:  # per cross-attention layer (target, source): a distribution per row
            m = np.array(mean)
            assert m.shape == (len(a["target"]), len(a["source"])) and np.allclose(m.sum(1), 1, atol=1e-3)
    assert {"alignment_0_0.png", "alignment_0_1.png"} <= referenced(html)
    assert all((tmp_path / "an" / f).is_file() for f in referenced(html))


def test_alignment_rows_are_distributions_over_the_source():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5, 7))  # layers of (heads, target, source)
    layers = [np.exp(x) / np.exp(x).sum(-1, keepdims=True) for x in logits]
    out = alignment_matrices(layers)
    assert len(out["heads"]) == len(out["mean"]) == 2
    assert out["mean"][0].shape == (5, 7) and np.allclose(out["mean"][1].sum(-1), 1)


def test_tokens_read_as_words_and_word_pieces():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)

    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["[PAD]", "[EOS]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["la casa es pequeña"] * 20 + ["el niño come"] * 10, trainer=trainer)
    ids = tok.encode("la casa pequeña niños").ids + [tok.token_to_id("[EOS]")]
    assert readable_tokens(tok, ids) == ["la", "casa", "pequeña", "niño", "##s", "[EOS]"]
    assert readable_tokens(None, [5, 7]) == ["5", "7"]
