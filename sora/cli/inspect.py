"""``sora inspect``: the particle table, or the particle graph, of a model folder or a config."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from torch import nn

from sora.cli.app import app
from sora.configio import read_mapping, validate
from sora.errors import SoraError
from sora.models import ModelConfig, build_model, load_model, mermaid, particles, summary
from sora.models.folder import is_model_dir


def model_from_path(path: Path) -> nn.Module:
    """A model folder loads as saved; a config or recipe file builds a fresh model."""
    if path.is_dir():
        if _is_hf_folder(path):
            raise SoraError(f"{path}: a Hugging Face model folder; import it first: sora hf import {path} --out DIR")
        if not is_model_dir(path):
            raise SoraError(f"{path}: not a model folder (needs config.json and model.safetensors)")
        return load_model(path)
    if not path.exists():
        raise SoraError(f"{path}: no such file or folder")
    data, lines = read_mapping(path)
    if "model" in data and isinstance(data["model"], dict):  # a recipe
        return build_model(validate(ModelConfig, data["model"], source=str(path), prefix=("model",), lines=lines))
    return build_model(validate(ModelConfig, data, source=str(path), lines=lines))


def _is_hf_folder(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and ("model_type" in data or "architectures" in data)


def print_particles(model: nn.Module, console: Console, title: str = "particles") -> None:
    table = Table(title=title, show_lines=False)
    for column, justify in (("name", "left"), ("kind", "left"), ("params", "right"), ("shape", "left")):
        table.add_column(column, justify=justify)
    for p in particles(model):
        style = "dim" if p.kind == "head" else None
        table.add_row(p.name, p.kind, f"{p.params:,}", p.shape, style=style)
    console.print(table)
    s = summary(model)
    console.print(f"total: {s['parameters']:,} parameters, {s['layers']} layers, "
                  f"{s['heads']} attention heads, {s['neurons']:,} feed-forward neurons")


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
        typer.echo(json.dumps({"particles": [p.as_dict() for p in particles(model)], "summary": summary(model)}, indent=2))
    else:
        print_particles(model, Console(), title=str(path))
