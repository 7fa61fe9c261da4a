"""``sora analyze``: measure every particle of a trained model and write an HTML report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sora.analyze.config import AnalyzeConfig
from sora.analyze.data import load_analysis_data, recipe_analyze_section
from sora.analyze.stage import analyze_model
from sora.cli.app import app
from sora.cli.out import claim, force_option
from sora.configio import validate
from sora.models import load_meta, load_model, load_tokenizer
from sora.models.checks import require_same_labels
from sora.models.folder import require_model_dir


@app.command("analyze")
def analyze_command(
    model_dir: Path = typer.Argument(..., help="a model folder (config.json, model.safetensors, tokenizer.json)"),
    data: Path = typer.Option(
        ...,
        "--data",
        help="a recipe or data config (YAML/JSON, read with sora.data and "
        "the model's tokenizer), or a .safetensors file of batch tensors",
    ),
    out: Path = typer.Option(..., "--out", help="output folder: analysis.json, report.html and its figures"),
    split: str = typer.Option(None, "--split", help="data split to measure on [default: validation]"),
    max_batches: int = typer.Option(None, "--max-batches", min=1, help="batches used [default: 16]"),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="examples per batch [default: 32]"),
    ablation: str = typer.Option(None, "--ablation", help="zero | mean | resample [default: zero]"),
    examples: list[str] = typer.Option([], "--example", help="a text whose attention the report draws (repeatable)"),
    methods: str = typer.Option(
        None,
        "--methods",
        help="comma-separated subset of gradient,ablation,attention,neurons,position,pruning [default: all]",
    ),
    force: bool = force_option(),
) -> None:
    """Head importance, ablations, attention statistics, neurons, positions and the pruning curve."""
    require_model_dir(model_dir)
    claim(out, "analysis", force, reads=(model_dir, data))
    console = Console(stderr=True, soft_wrap=True)
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    cli = {
        k: v
        for k, v in dict(split=split, max_batches=max_batches, batch_size=batch_size, ablation=ablation).items()
        if v is not None
    }
    if examples:
        cli["examples"] = examples
    if methods:
        cli["methods"] = [m.strip() for m in methods.split(",") if m.strip()]
    section = recipe_analyze_section(data)
    settings = {**(section.data if section else {}), **cli}
    config = validate(AnalyzeConfig, settings, source=f"{data} analyze section + command line", prefix=("analyze",))
    loaded = load_analysis_data(
        data, model, tokenizer, split=config.split, batch_size=config.batch_size, seed=config.seed
    )
    require_same_labels(model, load_meta(model_dir), loaded.labels, model_where=model_dir, data_where=data)
    console.print(
        f"analysing {model_dir} on {loaded.name} ({config.split}, up to {config.max_batches} batches "
        f"of {config.batch_size}) ..."
    )
    result = analyze_model(
        model_dir, loaded.batches, config, out, task=loaded.task, tokenizer=tokenizer, labels=loaded.labels
    )
    _print_summary(result, out, console)


def _print_summary(result: dict, out: Path, console: Console) -> None:
    s = result["summary"]
    base = result["baseline"]
    if base.get("metric") is not None:
        console.print(f"intact model: {result['metric']} {base['metric'] * 100:.1f}%, loss {base['loss']:.4f}")
    for line in s.get("ranking_check", []):  # which rankings lose to random, and which one pruning uses
        console.print(line, highlight=False, markup=False)
    if "most_important_heads" in s:
        console.print(f"most important heads: {', '.join(s['most_important_heads'])}")
    if "pruning_at" in s:
        for mark, v in s["pruning_at"].items():
            console.print(
                f"{mark} of heads removed: {result['pruning']['order_by']} order {v['importance'] * 100:.1f}%, "
                f"random {v['random'] * 100:.1f}%, reverse {v['reverse'] * 100:.1f}%"
            )
    typer.echo(str(Path(out) / "report.html"))
