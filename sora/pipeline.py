"""A recipe's stages, end to end: build the model, and run every stage the recipe configures."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from sora.models import build_model, save_model
from sora.recipe import Recipe


def run_recipe(recipe: Recipe, out_dir: str | Path, console: Console | None = None) -> dict:
    console = console or Console()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(recipe.model)
    from sora.cli.inspect import print_particles  # the table a person reads first

    print_particles(model, console, title=f"{recipe.name}: particles")
    model_dir = save_model(model, out_dir / "model", meta={"recipe": recipe.name, "stage": "built"})
    console.print(f"model folder: {model_dir}")
    return {"model_dir": str(model_dir)}
