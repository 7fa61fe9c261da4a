"""``sora hf import`` and ``sora hf export``: Hugging Face checkpoints in and out."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from sora.cli.app import app
from sora.cli.out import claim, force_option
from sora.errors import SoraError
from sora.interop import export_hf, import_to_folder
from sora.interop.verify import FIGURES
from sora.models import summary

hf_app = typer.Typer(
    help="Hugging Face checkpoints in and out (BERT, MiniLM, RoBERTa, DistilBERT, GPT-2, ViT).", no_args_is_help=True
)
app.add_typer(hf_app, name="hf")


@hf_app.command("import")
def import_command(
    source: str = typer.Argument(
        ...,
        help="a local Hugging Face model folder (config.json + weights), or hf:NAME "
        "for a packaged one, e.g. hf:all-minilm-l6-v2",
    ),
    out: Path = typer.Option(..., "--out", help="the Sora model folder to write"),
    pooling: str = typer.Option(
        None,
        "--pooling",
        help="mean or cls: how the encoder pools a sentence "
        "(default: the folder's sentence-transformers setting, else cls)",
    ),
    verify: bool = typer.Option(
        None,
        "--verify/--no-verify",
        help="compare outputs with transformers (default: when it is installed); nothing is written if they differ",
    ),
    force: bool = force_option(),
) -> None:
    """Build the same network from Sora particles, carry the tokenizer over, and write a model folder."""
    if not source.strip():  # Path("") would be the current folder
        raise SoraError("sora hf import: SOURCE is empty; give a Hugging Face model folder or hf:NAME")
    claim(out, "model", force, reads=(None if source.startswith("hf:") else source,))
    console = Console()
    result, path = import_to_folder(source, out, pooling=pooling, verify=verify)
    meta, config = result.meta, result.model.config
    s = summary(result.model)
    console.print(f"imported {meta['source']['architecture']} from {result.folder}")
    console.print(
        f"  -> {config.arch}: {s['layers']} layers, {s['heads']} heads, {s['neurons']:,} neurons, "
        f"{s['parameters']:,} parameters"
    )
    tokenizer_from = meta["tokenizer"]["from"]
    console.print(f"  tokenizer: {'from ' + tokenizer_from if tokenizer_from else 'none in the folder'}")
    for note in result.notes:
        console.print(f"  note: {note}", highlight=False)
    parity = meta.get("parity")
    if parity:
        console.print(f"  parity with transformers on {parity['inputs']}: {_figures(parity)} (ok)", highlight=False)
    console.print(f"model folder: {path}")


@hf_app.command("export")
def export_command(
    model_dir: Path = typer.Argument(..., help="a Sora model folder"),
    out: Path = typer.Option(..., "--out", help="the Hugging Face folder to write"),
    body_only: bool = typer.Option(
        False,
        "--body-only",
        help="export only the encoder body (e.g. a classifier that pools by mean, which transformers has no head for)",
    ),
    verify: bool = typer.Option(
        None,
        "--verify/--no-verify",
        help="check the written folder against this model with transformers "
        "(default: when it is installed); nothing is written if it differs",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    one_segment: bool = typer.Option(
        False,
        "--one-segment",
        help="export a BERT imported with a second token type anyway: every segment then reads as the first",
    ),
    force: bool = force_option(),
) -> None:
    """Write a folder that transformers.AutoModel.from_pretrained loads with the same outputs."""
    claim(out, "hf", force, reads=(model_dir,))
    report = export_hf(model_dir, out, body_only=body_only, verify=verify, one_segment=one_segment)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    console.print(f"wrote {report['architecture']} ({report['model_type']}) to {out}")
    for note in report["notes"]:
        console.print(f"  note: {note}", highlight=False)
    parity = report.get("parity")
    if parity:
        console.print(f"  checked with transformers on {parity['inputs']}: {_figures(parity)}", highlight=False)


def _figures(parity: dict) -> str:
    """A parity report's max differences (and greedy-token agreement) in one line."""
    figures = ", ".join(f"{k} max |diff| {parity[k]:.2e}" for k in FIGURES if k in parity)
    if "greedy_tokens_equal" in parity:
        figures += f", greedy tokens equal: {parity['greedy_tokens_equal']}"
    return figures
