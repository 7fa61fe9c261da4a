"""A recipe's stages, end to end: build the model, and run every stage the recipe configures."""

from __future__ import annotations

import os
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console

from sora.analyze.stage import analyze_model
from sora.atomic import make_dirs, remove_path
from sora.compress.scores import read_choice
from sora.compress.stage import FOLDERS, compress_model
from sora.deploy.export import export_onnx
from sora.errors import SoraError
from sora.interop import load_pretrained, with_pretrained
from sora.models import save_model
from sora.models.anatomy import print_particles
from sora.models.build import build_within_memory
from sora.recipe import Recipe
from sora.run_report import write_run_report
from sora.stages import StageBook, recovered_run
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
    """Every stage the recipe has, each skipped when OUT holds its outputs for today's settings (sora.stages)."""

    def show(model) -> None:  # the particle table: what a person reads first
        print_particles(model, console, title=f"{recipe.name}: particles")

    book = StageBook.open(out_dir, recipe)
    if recipe.train is None:  # nothing to train: the built (or imported) model is the result
        return _build_stage(recipe, out_dir, console, book, show=show)
    run = _train_or_recover(recipe, out_dir, console, book, show=show, resume=resume)
    results = {
        "model_dir": str(run.model_dir) if run.model_dir else None,
        "metrics": run.metrics,
        "stopped": run.result.stopped,
    }
    if not run.main or run.model_dir is None:  # other ranks, or an interrupted run: nothing more to do
        return results
    if recipe.analyze is not None:
        work = lambda: analyze_stage(recipe, run, out_dir / "analysis", console)  # noqa: E731
        results["report"] = str(_once(book, "analyze", console, work, out_dir / "analysis" / "report.html"))
    if recipe.compress is not None:
        evidence = out_dir / "analysis" / "analysis.json" if "report" in results else None
        work = lambda: compress_stage(recipe, run, out_dir / "compressed", console, scores=evidence)  # noqa: E731
        results["compression"] = str(_once(book, "compress", console, work, out_dir / "compressed" / "report.json"))
    if recipe.export is not None:
        work = lambda: export_stage(recipe, run, out_dir, console)  # noqa: E731
        results["export"] = str(_once(book, "export", console, work, out_dir / "export"))
    results["run_report"] = str(write_run_report(out_dir))  # the one page that shows every stage
    _print_where(results, console)
    return results


def _build_stage(recipe: Recipe, out_dir: Path, console: Console, book: StageBook, *, show) -> dict:
    """A recipe without training: build (or import) the model and save it as OUT/model."""

    def build() -> Path:
        model = build_within_memory(recipe.model, f"recipe '{recipe.name}': model")
        if recipe.init:
            load_pretrained(model, recipe.init)
        show(model)
        return save_model(model, out_dir / "model", meta={"recipe": recipe.name, "stage": "built"})

    model_dir = _once(book, "build", console, build, out_dir / "model")
    console.print(f"model folder: {model_dir}")
    return {"model_dir": str(model_dir)}


def _train_or_recover(recipe: Recipe, out_dir: Path, console: Console, book: StageBook, *, show, resume: bool):
    """The train stage: skipped when done with today's settings (what later stages need is read back from
    OUT), continued from its newest checkpoint when a training with today's settings was interrupted."""
    if book.skips("train"):
        _say(console, "train: done, skipped (settings unchanged)")
        return recovered_run(recipe, out_dir)
    continuing = resume or book.continues_training()
    if continuing and not resume:
        _say(console, "train: continuing the interrupted training from its newest checkpoint (settings unchanged)")
    elif book.changed("train"):
        _say(console, "train: settings or data files changed since it was done; training anew")
    book.begin("train")
    run = train_stage(recipe, out_dir, console, show=show, resume=continuing)
    if run.main and run.model_dir is not None:
        book.finish("train")
        write_run_report(out_dir)
    return run


def _once(book: StageBook, stage: str, console: Console, work: Callable[[], Path], output: Path) -> Path:
    """``work()`` (what ``stage`` makes) unless the stage is done with today's settings: then ``output``, the
    path ``work`` returns. The stage is recorded as done once ``work`` returns, its outputs whole."""
    if book.skips(stage):
        _say(console, f"{stage}: done, skipped (settings unchanged)")
        return output
    if book.changed(stage):
        _say(console, f"{stage}: settings changed since it was done; running it again")
    book.begin(stage)  # a kill from here on leaves the stage (and what reads it) to be redone
    made = work()
    book.finish(stage)
    if book.writes:
        write_run_report(book.out_dir)  # after every stage: an interrupted run still has its page
    return made


def _say(console: Console, message: str) -> None:
    console.print(message, highlight=False, markup=False)


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
    for line in analysis.get("summary", {}).get("ranking_check", []):
        console.print(f"  {line}", highlight=False, markup=False)
    for mark, v in analysis.get("summary", {}).get("pruning_at", {}).items():
        console.print(
            f"  {mark} of heads removed: {analysis['pruning']['order_by']} order {v['importance']:.3f}, "
            f"random {v['random']:.3f}, reverse {v['reverse']:.3f}"
        )
    return out_dir / "report.html"


def compress_stage(recipe: Recipe, run, out_dir: Path, console: Console, *, scores: Path | None = None) -> Path:
    """Prune and quantize the trained model on the evidence of the analysis (the rankings its check chose, unless
    the recipe names scores; an analysis without a ranking check leaves compress to check them itself); write
    OUT/compressed/report.json."""
    config = recipe.compress
    if scores is not None and config.prune.scores is None and read_choice(scores):  # rankings checked there
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
    """Where the results are, a line each; never folded, so a path can be copied whole."""
    lines = [("model folder", results["model_dir"])]
    lines += [(label, results[key]) for key, label in WHERE if key in results]
    if "export" in results:
        lines.append(("serve it", f"sora serve {shlex.quote(results['export'])}"))
    for label, value in lines:
        console.print(f"{label}: {value}", highlight=False, markup=False, soft_wrap=True)


WHERE = [
    ("report", "particle report"),
    ("compression", "compression report"),
    ("export", "ONNX export"),
    ("run_report", "run report"),
]
