"""``sora prune``, ``sora quantize`` and ``sora compress``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sora.cli.app import app
from sora.cli.out import claim, force_option
from sora.compress import CompressConfig, PruneConfig, QuantizeConfig, quantize_model, save_quantized
from sora.compress.measure import weights_bytes
from sora.compress.prune import prune
from sora.compress.sensitivity import quantize_calibrated
from sora.compress.stage import compress_model
from sora.configio import Section, apply_overrides, load, read_section, validate
from sora.data import prepare_data, read_data_config
from sora.errors import SoraError
from sora.models import load_meta, load_model, load_tokenizer, save_model
from sora.models.checks import require_fits
from sora.models.folder import load_config, require_model_dir
from sora.particles.int8 import describe_kernels
from sora.tasks import task_for


def _load_fp32(model_dir: Path):
    model = load_model(require_model_dir(model_dir))
    if model.config.quantization:
        raise SoraError(f"{model_dir}: is quantized; prune or quantize the fp32 model")
    return model, load_tokenizer(model_dir), load_meta(model_dir)


def _prepared(path: Path, model_dir: Path, overrides: list[str]):
    """The data of a recipe (its data: section) or of a data config, read through the model's tokenizer."""
    return prepare_data(read_data_config(path, overrides), tokenizer=load_tokenizer(model_dir))


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.replace(",", " ").split() if n.strip()]


@app.command("prune")
def prune_command(
    model_dir: Path = typer.Argument(..., help="an fp32 model folder"),
    out: Path = typer.Option(..., "--out", help="folder for the pruned model"),
    plan: Path = typer.Option(
        None,
        "--plan",
        help="a pruning plan YAML (keys: remove, heads, neurons, scope, scores, sparsity; see docs/compression.md)",
    ),
    heads: str = typer.Option(
        None,
        "--heads",
        help="particle names to remove, comma-separated: layers.1.attn.head.3,layers.0.ffn.neuron.7,layers.2",
    ),
    fraction: float = typer.Option(None, "--fraction", help="fraction of all heads to remove, least important first"),
    neurons: float = typer.Option(None, "--neurons", help="fraction of feed-forward neurons to remove"),
    scores: Path = typer.Option(None, "--scores", help="analysis.json from sora analyze (default: weight magnitudes)"),
    scope: bool = typer.Option(
        None, "--global/--per-layer", help="rank across all layers, or within each layer", show_default=False
    ),
    sparsity: float = typer.Option(None, "--sparsity", help="unstructured: zero this fraction of block weights"),
    vocabulary: Path = typer.Option(
        None,
        "--vocabulary",
        help="a recipe or data YAML: keep only the tokens its "
        "training texts use (WordPiece models; the tokenizer is rebuilt to match)",
    ),
    force: bool = force_option(),
) -> None:
    """Remove heads, neurons, layers and unused tokens for real (smaller matrices), or zero weights by magnitude."""
    config, where = _prune_config(plan, heads, fraction, neurons, scores, scope, sparsity)
    if config.vocabulary and vocabulary is None:
        raise SoraError(f"{where}: vocabulary: true needs --vocabulary DATA (whose training texts decide what stays)")
    if not config.structural and config.sparsity is None and vocabulary is None:
        raise SoraError(
            "nothing to prune: give --plan, --heads NAMES, --fraction F, --neurons F, --sparsity S or --vocabulary DATA"
        )
    claim(out, "model", force, reads=(model_dir, plan, scores, vocabulary))
    model, tokenizer, meta = _load_fp32(model_dir)
    console = Console()
    texts = _prepared(vocabulary, model_dir, []) if vocabulary is not None else None
    pruned, tokenizer, info = prune(model, config, where=where, tokenizer=tokenizer, data=texts, log=console.print)
    save_model(
        pruned,
        out,
        tokenizer=tokenizer,
        meta={**meta, "stage": "pruned", "pruned_from": str(model_dir), "pruning": info},
    )
    _print_pruned(info, out, console)


def _prune_config(
    plan: Path | None,
    heads: str | None,
    fraction: float | None,
    neurons: float | None,
    scores: Path | None,
    scope: bool | None,
    sparsity: float | None,
):
    """The PruneConfig of ``--plan`` or of the other options, and where it came from (for messages)."""
    if plan is not None and (heads or fraction is not None or neurons is not None or sparsity is not None):
        raise SoraError(
            "--plan already says what to remove: give either --plan or --heads/--fraction/--neurons/--sparsity"
        )
    if plan is not None:
        config, where = load(PruneConfig, plan), str(plan)
    else:
        options = {
            "remove": _names(heads or ""),
            "heads": fraction,
            "neurons": neurons,
            "sparsity": sparsity,
            "scores": str(scores) if scores else None,
        }
        config = validate(PruneConfig, {k: v for k, v in options.items() if v not in (None, [])}, source="options")
        where = "--heads"
    if scope is not None:
        config.scope = "global" if scope else "per_layer"
    return config, where


def _print_pruned(info: dict, out: Path, console: Console) -> None:
    before, after = info["before"], info["after"]
    console.print(
        f"heads {before['heads']} -> {after['heads']}, "
        f"neurons {before['neurons']:,} -> {after['neurons']:,}, "
        f"layers {before['layers']} -> {after['layers']}, "
        f"parameters {before['parameters']:,} -> {after['parameters']:,} "
        f"({after['parameters'] / before['parameters']:.1%})"
    )
    if "sparsity" in info:
        console.print(
            f"block weights zero: {info['sparsity']['block_sparsity']:.1%} (stored dense: no size or speed gain)"
        )
    console.print(f"pruned model: {out}")


@app.command("quantize")
def quantize_command(
    model_dir: Path = typer.Argument(..., help="an fp32 model folder"),
    out: Path = typer.Option(..., "--out", help="folder for the int8 model"),
    embeddings: bool = typer.Option(True, "--embeddings/--no-embeddings", help="store token embeddings as int8"),
    min_weights: int = typer.Option(
        None, "--min-weights", min=0, help="quantize only Linears with at least this many weights (default 100000)"
    ),
    min_side: int = typer.Option(
        None, "--min-side", min=0, help="and only Linears at least this wide on both sides (default 256)"
    ),
    activations: str = typer.Option(
        "tensor",
        "--activations",
        help="activation scales of every int8 Linear: tensor (one per call, fastest) or row (one per token, finer)",
    ),
    data: Path = typer.Option(
        None,
        "--data",
        help="a recipe or data YAML: measure which Linears int8 hurts most "
        "on its validation split and give --sensitive of them --sensitive-as",
    ),
    sensitive: int = typer.Option(4, "--sensitive", min=0, help="with --data: how many Linears"),
    sensitive_as: str = typer.Option("row", "--sensitive-as", help="row (per-token activation scales) or fp32 maths"),
    force: bool = force_option(),
) -> None:
    """int8 dynamic quantization: int8 weights per output channel, activations quantized on the fly."""
    claim(out, "model", force, reads=(model_dir, data))
    model, tokenizer, meta = _load_fp32(model_dir)
    options = {
        "embeddings": embeddings,
        "sensitive": sensitive,
        "sensitive_as": sensitive_as,
        "activations": activations,
        "min_weights": min_weights,
        "min_side": min_side,
    }
    config = validate(QuantizeConfig, {k: v for k, v in options.items() if v is not None}, source="sora quantize")
    if data is not None:
        prepared = _prepared(data, model_dir, [])
        require_fits(model.config, prepared, data)
        q = quantize_calibrated(
            model,
            prepared,
            task_for(prepared, model),
            config,
            log=lambda m: Console().print(m, highlight=False, markup=False),
        )
    else:
        q = quantize_model(model, config)
    save_quantized(q, out, tokenizer=tokenizer, meta={**meta, "stage": "int8", "quantized_from": str(model_dir)})
    _print_quantized(q.config.quantization, config, model_dir, out)


def _print_quantized(info: dict, config: QuantizeConfig, model_dir: Path, out: Path) -> None:
    before, after = weights_bytes(model_dir), weights_bytes(out)
    Console().print(
        f"int8: {len(info['linear'])} linear layers ({len(info['linear_row_scaled'])} with per-row "
        f"activation scales), {len(info['embeddings'])} embeddings "
        f"({len(info['linear_fp32_compute'])} Linears int8 on disk with fp32 maths: under "
        f"{config.min_weights:,} weights or {config.min_side} wide, or sensitive with --sensitive-as fp32)\n"
        f"weights {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB ({before / after:.2f}x smaller)\n"
        f"on this CPU: {describe_kernels()}\n"
        f"int8 model: {out}"
    )


@app.command("compress")
def compress_command(
    model_dir: Path = typer.Argument(..., help="an fp32 model folder (e.g. runs/sentiment/model)"),
    data: Path = typer.Option(..., "--data", help="a recipe (its data: and compress: sections) or a data config YAML"),
    out: Path = typer.Option(..., "--out", help="output folder: variants, report.json, report.md, plot.png"),
    config_file: Path = typer.Option(None, "--config", help="a compress config YAML (default: the recipe's compress:)"),
    heads: float = typer.Option(None, "--heads", help="fraction of heads to remove"),
    neurons: float = typer.Option(None, "--neurons", help="fraction of feed-forward neurons to remove"),
    scores: Path = typer.Option(None, "--scores", help="analysis.json (default: importance measured on validation)"),
    finetune_epochs: float = typer.Option(None, "--finetune", help="fine-tune this many epochs after pruning"),
    lora: bool = typer.Option(False, "--lora", help="fine-tune LoRA adapters only (then merge)"),
    distill: float = typer.Option(
        None,
        "--distill",
        help="fine-tune towards the unpruned model's outputs with this weight (0-1) beside the labels' loss",
    ),
    hidden: float = typer.Option(
        None,
        "--hidden",
        help="fine-tune each kept block towards the unpruned block's outputs with this weight (layer distillation)",
    ),
    steps: int = typer.Option(None, "--steps", min=1, help="reach the budget in this many prune+fine-tune rounds"),
    overrides: list[str] = typer.Option(
        [], "--set", help="override a key: --set prune.scope=per_layer, or data.limit=500"
    ),
    force: bool = force_option(),
) -> None:
    """Analyze importance, prune, optionally fine-tune, quantize, and evaluate every variant."""
    require_model_dir(model_dir)
    section = read_section(config_file, "compress") if config_file else read_section(data, "compress", standalone=False)
    section = section or Section({}, str(data), ("compress",))
    apply_overrides(section.data, [o for o in overrides if not o.startswith("data.")])
    _compress_options(
        section.data,
        heads=heads,
        neurons=neurons,
        scores=scores,
        finetune_epochs=finetune_epochs,
        lora=lora,
        distill=distill,
        hidden=hidden,
        steps=steps,
    )
    config = section.validate(CompressConfig)
    claim(out, "compress", force, reads=(model_dir, data, config_file, scores))
    prepared = _prepared(data, model_dir, [o.removeprefix("data.") for o in overrides if o.startswith("data.")])
    require_fits(load_config(model_dir), prepared, data)
    console = Console()
    compress_model(model_dir, prepared, config, out, log=lambda m: console.print(m, highlight=False, markup=False))
    console.print(f"report: {out / 'report.json'}, {out / 'report.md'}, {out / 'plot.png'}")


def _compress_options(section: dict, *, heads, neurons, scores, finetune_epochs, lora, distill, hidden, steps) -> None:
    """Write the command's options into a compress section, over what the file says.

    The section gets a ``prune:`` mapping even when empty: without one, ``sora compress`` prunes only
    what its options ask for (the recipe default, half the heads, is for ``sora run``)."""
    prune = section.setdefault("prune", {})
    prune_options = {"heads": heads, "neurons": neurons, "scores": str(scores) if scores else None}
    if isinstance(prune, dict):  # anything else is left for validation to name
        prune.update({k: v for k, v in prune_options.items() if v is not None})
    if finetune_epochs is not None or lora or distill is not None or hidden is not None:
        ft = section.get("finetune") or {}
        if isinstance(ft, dict):
            ft_options = {"epochs": finetune_epochs, "distill": distill, "hidden": hidden}
            ft.update({k: v for k, v in ft_options.items() if v is not None})
            if lora:
                ft.setdefault("lora", {})
            section["finetune"] = ft
    if steps is not None:
        section["steps"] = steps
