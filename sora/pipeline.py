"""A recipe's stages, end to end: build the model, and run every stage the recipe configures."""

from __future__ import annotations

import os
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console

from sora.analyze.stage import analyze_model
from sora.atomic import make_dirs, remove_path
from sora.compress.stage import FOLDERS, compress_model
from sora.deploy.export import export_onnx
from sora.errors import SoraError
from sora.interop import load_pretrained, with_pretrained
from sora.models import save_model
from sora.models.anatomy import print_particles
from sora.models.build import build_within_memory
from sora.recipe import Recipe
from sora.train import train_recipe
from sora.train.checkpoint import list_checkpoints

RESULTS = ("model", "best", "metrics.json")  # with checkpoints: what a failed run keeps, to read or resume


def run_recipe(recipe: Recipe, out_dir: str | Path, console: Console | None = None, *, resume: bool = False) -> dict:
    with output_folder(Path(out_dir)):
        return _run_stages(recipe, Path(out_dir), console or Console(), resume=resume)


@contextmanager
def output_folder(out_dir: Path) -> Iterator[Path]:
    """Create ``out_dir``; if the command then fails before the folder holds a result or a checkpoint
    to resume from, remove what it created, so a failed run leaves no empty folder behind."""
    made = make_dirs(out_dir)
    try:
        yield out_dir
    except BaseException:
        if made and int(os.environ.get("RANK", "0")) == 0 and not _has_results(out_dir):
            remove_path(made[0])  # made by this command: nothing in it is anyone else's
        raise


def _has_results(out_dir: Path) -> bool:
    return any((out_dir / name).exists() for name in RESULTS) or bool(list_checkpoints(out_dir / "checkpoints"))


def _run_stages(recipe: Recipe, out_dir: Path, console: Console, *, resume: bool) -> dict:
    def show(model) -> None:  # the particle table: what a person reads first
        print_particles(model, console, title=f"{recipe.name}: particles")

    if recipe.train is None:  # nothing to train: the built (or imported) model is the result
        model = build_within_memory(recipe.model, f"recipe '{recipe.name}': model")
        if recipe.init:
            load_pretrained(model, recipe.init)
        show(model)
        model_dir = save_model(model, out_dir / "model", meta={"recipe": recipe.name, "stage": "built"})
        console.print(f"model folder: {model_dir}")
        return {"model_dir": str(model_dir)}
    run = train_stage(recipe, out_dir, console, show=show, resume=resume)
    results = {
        "model_dir": str(run.model_dir) if run.model_dir else None,
        "metrics": run.metrics,
        "stopped": run.result.stopped,
    }
    if not run.main or run.model_dir is None:  # other ranks, or an interrupted run: nothing more to do
        return results
    if recipe.analyze is not None:
        results["report"] = str(analyze_stage(recipe, run, out_dir / "analysis", console))
    if recipe.compress is not None:
        evidence = out_dir / "analysis" / "analysis.json" if "report" in results else None
        results["compression"] = str(compress_stage(recipe, run, out_dir / "compressed", console, scores=evidence))
    if recipe.export is not None:
        results["export"] = str(export_stage(recipe, run, out_dir, console))
    _print_where(results, console)
    return results


def train_stage(recipe: Recipe, out_dir: Path, console: Console, *, show=None, resume: bool = False):
    """Prepare the data, build the model (``show`` prints it), train, test, save OUT/model and OUT/metrics.json."""

    def log(msg: str) -> None:
        console.print(msg, highlight=False, markup=False)

    with output_folder(out_dir):
        if recipe.init:  # start from pretrained weights: their tokenizer for the data, their values once built
            recipe, show = with_pretrained(recipe, out_dir, on_model=show, log=log)
        return train_recipe(recipe, out_dir, resume=resume, on_model=show, log=log)


def analyze_stage(recipe: Recipe, run, out_dir: Path, console: Console) -> Path:
    """Measure every particle of the trained model on held-out data; write OUT/analysis/report.html."""
    cfg = recipe.analyze
    console.print(f"analysing particles on {cfg.split} ({cfg.max_batches} batches of {cfg.batch_size}) ...")
    analysis = analyze_model(
        run.model_dir,
        lambda: run.data.loader(cfg.split, cfg.batch_size, seed=cfg.seed),
        cfg,
        out_dir,
        task=run.data.task,
        tokenizer=run.data.tokenizer,
        labels=run.data.labels,
    )
    for mark, v in analysis.get("summary", {}).get("pruning_at", {}).items():
        console.print(
            f"  {mark} of heads removed: importance order {v['importance']:.3f}, "
            f"random {v['random']:.3f}, reverse {v['reverse']:.3f}"
        )
    return out_dir / "report.html"


def compress_stage(recipe: Recipe, run, out_dir: Path, console: Console, *, scores: Path | None = None) -> Path:
    """Prune and quantize the trained model on the evidence of the analysis (its importance
    scores, unless the recipe names others); write OUT/compressed/report.json."""
    config = recipe.compress
    if scores is not None and config.prune.scores is None:
        config = config.model_copy(update={"prune": config.prune.model_copy(update={"scores": str(scores)})})
    compress_model(
        run.model_dir, run.data, config, out_dir, log=lambda msg: console.print(msg, highlight=False, markup=False)
    )
    return out_dir / "report.json"


def export_stage(recipe: Recipe, run, out_dir: Path, console: Console) -> Path:
    """Export the trained (or pruned) model to OUT/export: ONNX graphs checked against torch, ready to serve."""
    cfg = recipe.export
    source = out_dir / "model" if cfg.model == "trained" else out_dir / "compressed" / FOLDERS["pruned"]
    if cfg.model == "pruned" and (recipe.compress is None or not source.is_dir()):
        raise SoraError(
            f"recipe '{recipe.name}': export.model is pruned, but the run has no pruned model "
            "(give the recipe a compress.prune section, or export.model: trained)"
        )
    console.print(f"exporting {source} to ONNX{' (int8)' if cfg.int8 else ''} ...")
    log = lambda msg: console.print(f"  {msg}", highlight=False, markup=False)  # noqa: E731
    export_onnx(source, out_dir / "export", int8=cfg.int8, log=log)
    return out_dir / "export"


def _print_where(results: dict, console: Console) -> None:
    console.print(f"model folder: {results['model_dir']}")
    if "report" in results:
        console.print(f"particle report: {results['report']}")
    if "compression" in results:
        console.print(f"compression report: {results['compression']}")
    if "export" in results:
        console.print(f"ONNX export: {results['export']}")
        console.print(
            f"serve it: sora serve {shlex.quote(results['export'])}", highlight=False, markup=False, soft_wrap=True
        )
