"""``sora train``, ``sora eval`` and ``sora generate``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sora.cli.app import app
from sora.cli.out import claim, force_option
from sora.data import read_data_config
from sora.deploy.predictor import Predictor
from sora.errors import SoraError
from sora.models import load_config, load_model, load_tokenizer
from sora.models.folder import require_model_dir
from sora.models.generate import generate_text
from sora.pipeline import train_stage  # the pipeline's stage: it also applies a recipe's `init` weights
from sora.recipe import load_recipe
from sora.train import evaluate_folder


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="recipe YAML with model, data and train sections"),
    out: Path = typer.Option(..., "--out", help="output folder: model, best, checkpoints, logs, metrics.json"),
    profile: str = typer.Option(None, "--profile", help="a named profile of the recipe, e.g. quick"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: --set train.lr=3e-4"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint in OUT/checkpoints"),
    force: bool = force_option(),
) -> None:
    """Train a model from a recipe; under torchrun, data-parallel over the processes.

    Ctrl-C finishes the current step and writes a checkpoint; --resume continues exactly.
    """
    recipe = load_recipe(config, profile=profile, overrides=overrides)
    claim(out, "run", force, resume=resume, reads=(config,))
    console = Console()
    run = train_stage(recipe, Path(out), console, resume=resume)
    if run.result.interrupted:
        if run.main:
            console.print(
                f"interrupted at step {run.result.step}; continue with: sora train {config} --out {out} --resume"
            )
        raise typer.Exit(130)


@app.command("eval")
def eval_command(
    model_dir: Path = typer.Argument(..., help="a model folder (OUT/model, OUT/best or a checkpoint)"),
    data: Path = typer.Option(..., "--data", help="a recipe (its data: section is used) or a data config YAML"),
    split: str = typer.Option("test", "--split", help="train, validation or test"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    overrides: list[str] = typer.Option([], "--set", help="override a data key: --set limit=500"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    beam: int = typer.Option(1, "--beam", min=1, help="seq2seq: beam width of the decodes BLEU reads (1: greedy)"),
    decode_examples: int = typer.Option(200, "--decode-examples", min=0, help="seq2seq/ctc: examples decoded"),
) -> None:
    """Evaluate a saved model on a split of a dataset, with the model's own tokenizer."""
    config = read_data_config(data, overrides)
    result = evaluate_folder(
        model_dir, config, split=split, batch_size=batch_size, beam=beam, decode_examples=decode_examples
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"{model_dir} on {result['dataset']} ({split})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        table.add_row(key, f"{value:.4f}")
    Console().print(table)


@app.command("generate")
def generate_command(
    model_dir: Path = typer.Argument(..., help="a decoder_lm, seq2seq or span_extractor (question answering) folder"),
    prompt: str = typer.Option("", "--prompt", help="text to continue (LM) or translate (seq2seq)"),
    question: str = typer.Option(None, "--question", help="span_extractor: the question to answer"),
    context: str = typer.Option(None, "--context", help="span_extractor: the paragraph that holds the answer"),
    max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="0 = greedy"),
    top_k: int = typer.Option(None, "--top-k", min=1, help="sample from the k most likely tokens"),
    top_p: float = typer.Option(None, "--top-p", min=0.0, max=1.0, help="nucleus sampling"),
    samples: int = typer.Option(1, "--samples", min=1, help="how many continuations"),
    beam: int = typer.Option(
        1,
        "--beam",
        min=1,
        help="beam width: the most likely output instead of samples (ignores --temperature, --top-k, --top-p, --seed)",
    ),
    seed: int = typer.Option(None, "--seed", min=0, max=2**32 - 1, help="for repeatable samples"),
) -> None:
    """Print text from a model: continuations of a prompt, its translation, or the answer to --question about
    --context (a question-answering model)."""
    require_model_dir(model_dir)
    if load_config(model_dir).arch == "span_extractor":
        typer.echo(_answer(model_dir, question or prompt, context))
        return
    model = load_model(model_dir)
    texts = generate_text(
        model,
        load_tokenizer(model_dir),
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        beam=beam,
        seed=seed,
        samples=samples,
    )
    for i, text in enumerate(texts):
        if len(texts) > 1:
            typer.echo(f"--- sample {i + 1}")
        typer.echo(text)


def _answer(model_dir: Path, question: str, context: str | None) -> str:
    """The answer to ``question`` about ``context``, read and decoded as `sora predict` and `sora serve` do."""
    if not question.strip() or not context or not context.strip():
        raise SoraError("give both a question (--question) and a paragraph (--context)")
    (found,) = Predictor.load(model_dir, backend="torch").predict([{"question": question, "context": context}])
    return found["answer"]
