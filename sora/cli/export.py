"""``sora export``: a model folder to ONNX graphs, checked against torch, ready for ``sora serve``."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.console import Console

from sora.cli.app import app
from sora.cli.out import claim, force_option
from sora.deploy import export_onnx
from sora.errors import SoraError
from sora.models.folder import require_model_dir

FORMATS = ("onnx",)


@app.command("export")
def export_command(
    model_dir: Path = typer.Argument(..., help="an fp32 model folder (pruned and vocabulary-pruned ones too)"),
    out: Path = typer.Option(..., "--out", help="the export folder to write: the model folder plus its ONNX graphs"),
    fmt: str = typer.Option("onnx", "--format", help="the export format (onnx)"),
    int8: bool = typer.Option(
        False, "--int8", help="quantize the graphs to int8 (ONNX Runtime's dynamic quantization) and report agreement"
    ),
    force: bool = force_option(),
) -> None:
    """Export every graph of a model to ONNX (dynamic batch and length), refused unless it matches torch within 1e-4."""
    if fmt not in FORMATS:
        raise SoraError(f"--format {fmt}: unknown export format; the one format is onnx")
    require_model_dir(model_dir)
    claim(out, "export", force, reads=(model_dir,))
    console = Console(soft_wrap=True)
    say = lambda line: console.print(f"  {line}", highlight=False, markup=False)  # noqa: E731  progress and figures
    export = export_onnx(model_dir, out, int8=int8, log=say)
    graphs = ", ".join(g["file"] for g in export["graphs"].values())
    console.print(
        f"wrote {out} ({export['precision']}, opset {export['opset']}): {graphs}", highlight=False, markup=False
    )
    console.print(f"serve it: sora serve {shlex.quote(str(out))}", highlight=False, markup=False)
