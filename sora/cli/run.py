"""``sora run``: every stage of a recipe, end to end (the main job)."""

from __future__ import annotations

from pathlib import Path

import typer

from sora.cli.app import app
from sora.cli.out import claim, force_option
from sora.pipeline import run_recipe
from sora.recipe import load_recipe
from sora.stages import continues_run


@app.command("run")
def run_command(
    recipe: Path = typer.Argument(..., help="recipe YAML, e.g. recipes/sentiment.yaml"),
    out: Path = typer.Option(..., "--out", help="output folder (model, metrics, report)"),
    profile: str = typer.Option(None, "--profile", help="a named profile of the recipe, e.g. quick"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: --set train.epochs=3"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in OUT from its newest checkpoint"),
    force: bool = force_option(),
) -> None:
    """Run every stage a recipe configures and print where the results are.

    Run again into the same OUT, it skips the stages that are done with unchanged settings and continues an
    interrupted training from its newest checkpoint; OUT holding another recipe's run is refused."""
    loaded = load_recipe(recipe, profile=profile, overrides=overrides)
    same_run = not force and continues_run(out, loaded)  # this recipe's own earlier `sora run`: continue it
    claim(out, "run", force, resume=resume or same_run, reads=(recipe,))
    run_recipe(loaded, out, resume=resume)
