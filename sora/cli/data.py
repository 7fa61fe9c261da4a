"""``sora data list | fetch NAME | show NAME``: the built-in datasets, and what any data config yields."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table as RichTable

from sora.cli.app import app
from sora.configio import validate
from sora.data import DataConfig, builtin, cache, prepare_data, read_data_config
from sora.data.duplicates import summary
from sora.errors import SoraError

data_app = typer.Typer(
    help="Built-in datasets: list them, fetch them into the cache, show what they hold.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


@data_app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the built-in datasets, where each comes from, and whether it is in the cache."""
    rows = [
        {
            "name": b.name,
            "task": b.task,
            "tasks": list(b.tasks),
            "cached": cache.is_complete(b.folder),
            "description": b.description,
            "origin": b.origin,
        }
        for b in builtin.registry().values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = RichTable(title=f"built-in datasets (cache: {cache.sora_home()})")
    for column in ("name", "task", "cached", "contents", "from"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], "/".join(r["tasks"]), "yes" if r["cached"] else "no", r["description"], r["origin"])
    Console().print(table)


@data_app.command("fetch")
def fetch_command(
    names: list[str] = typer.Argument(None, help="built-in dataset names (see `sora data list`)"),
    all_: bool = typer.Option(False, "--all", help="fetch every built-in dataset"),
    force: bool = typer.Option(False, "--force", help="fetch again even if cached"),
    verify: bool = typer.Option(False, "--verify", help="re-check the cached files' checksums"),
) -> None:
    """Obtain datasets into the cache ($SORA_HOME, default ~/.cache/sora); idempotent."""
    if all_:
        names = list(builtin.registry())
    if not names:
        raise SoraError("name a dataset to fetch (see `sora data list`) or pass --all")
    for name in names:
        builtin.get(name)  # unknown names fail before any work
    for name in names:
        entry = builtin.get(name)
        if force or not cache.is_complete(entry.folder, verify=verify):
            typer.echo(f"{name}: fetching ({entry.origin}) ...", err=True)
        folder = builtin.fetch(name, force=force, verify=verify)
        typer.echo(f"{name}: {folder}")


@data_app.command("show")
def show_command(
    name: str = typer.Argument(
        ..., help="a built-in dataset; a YAML/JSON file: a recipe or a data config; or a data file or folder"
    ),
    task: str = typer.Option(None, "--task", help="task to prepare for (default: the dataset's)"),
    limit: int = typer.Option(None, "--limit", help="at most this many examples per split (1 or more; omit for all)"),
    examples: int = typer.Option(3, "--examples", min=0, help="how many examples to print"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Prepare a dataset and print its size, splits, label counts and a few examples."""
    overrides = [
        f"{key}={json.dumps(value)}"
        for key, value in (("task", task), ("limit", limit))  # "" stays ""
        if value is not None
    ]
    if not name.strip():  # Path("") would be the current folder
        raise SoraError(
            "sora data show: the name is empty; give a built-in dataset (see `sora data list`) or a YAML/JSON file"
        )
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json"):
        config = read_data_config(path, overrides)
    else:  # a built-in dataset's name, or a data file or folder read with the defaults
        given = {("source" if path.exists() else "dataset"): name, "task": task, "limit": limit}
        config = validate(
            DataConfig, {k: v for k, v in given.items() if v is not None}, source="sora data show", prefix=()
        )
    info = prepare_data(config).describe(examples)
    if as_json:
        typer.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    _print(info)


def _print(info: dict) -> None:
    console = Console()
    console.print(f"[bold]{info['name']}[/]: {info['task']} ({info['modality']})", highlight=False)
    splits = info["splits"]
    console.print(
        "splits: " + ", ".join(f"{k} {v:,}" for k, v in splits.items()) + f" (total {sum(splits.values()):,})"
    )
    if "vocab_size" in info:
        console.print(f"vocabulary: {info['vocab_size']:,}")
    for key in ("length_tokens", "length_frames", "length_pixels"):
        if key in info:
            console.print(
                f"{key.replace('_', ' ')}: "
                + ", ".join(f"{k} mean {v['mean']} max {v['max']}" for k, v in info[key].items())
            )
    if "tokens" in info:
        console.print("tokens: " + ", ".join(f"{k} {v:,}" for k, v in info["tokens"].items()))
    if "label_counts" in info:
        table = RichTable(title="label counts")
        table.add_column("label")
        for split in info["label_counts"]:
            table.add_column(split, justify="right")
        for label in info["labels"]:
            table.add_row(label, *(f"{info['label_counts'][s][label]:,}" for s in info["label_counts"]))
        console.print(table)
    elif info.get("labels"):
        console.print(f"labels ({len(info['labels'])}): " + ", ".join(info["labels"][:40]))
    if info.get("skipped_rows"):
        console.print(f"[yellow]skipped rows:[/] {info['skipped_rows']}")
    for line in summary(info):
        console.print(line, highlight=False, markup=False)
    console.print("examples:")
    for ex in info["examples"]:
        console.print("  " + json.dumps(ex, ensure_ascii=False)[:400], highlight=False, markup=False)
