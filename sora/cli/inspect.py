"""``sora inspect``: the particle table, or the particle graph, of a model folder or a config."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from torch import nn

from sora.cli.app import app
from sora.configio import read_section
from sora.errors import SoraError
from sora.models import ModelConfig, load_model, mermaid, particles, summary
from sora.models.anatomy import print_particles
from sora.models.build import build_within_memory
from sora.models.folder import require_model_dir


def model_from_path(path: Path) -> nn.Module:
    """A model folder loads as saved; a config or recipe file builds a fresh model."""
    if path.is_dir():
        if _is_hf_folder(path):
            raise SoraError(f"{path}: a Hugging Face model folder; import it first: sora hf import {path} --out DIR")
        return load_model(require_model_dir(path))
    if not path.exists():
        raise SoraError(f"{path}: no such file or folder")
    return build_within_memory(read_section(path, "model", required=True).validate(ModelConfig), path)


def _is_hf_folder(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and ("model_type" in data or "architectures" in data)


@app.command("inspect")
def inspect_command(
    path: Path = typer.Argument(..., help="a model folder, or a model config / recipe (YAML or JSON)"),
    as_mermaid: bool = typer.Option(False, "--mermaid", help="print the particle graph as a Mermaid flowchart"),
    as_json: bool = typer.Option(False, "--json", help="print particles and totals as JSON"),
) -> None:
    """List every particle of a model: name, kind, parameter count and shape."""
    model = model_from_path(path)
    if as_mermaid:
        typer.echo(mermaid(model), nl=False)
    elif as_json:
        typer.echo(
            json.dumps({"particles": [p.as_dict() for p in particles(model)], "summary": summary(model)}, indent=2)
        )
    else:
        print_particles(model, Console(), title=str(path))
