"""``sora prune``, ``sora quantize`` and ``sora compress``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sora.cli.app import app
from sora.cli.out import claim, force_option
from sora.configio import apply_overrides, load, read_mapping, validate
from sora.errors import SoraError


def _load_fp32(model_dir: Path):
    from sora.models import load_meta, load_model, load_tokenizer
    from sora.models.folder import is_model_dir

    if not is_model_dir(model_dir):
        raise SoraError(f"{model_dir}: not a model folder (needs config.json and model.safetensors)")
    model = load_model(model_dir)
    if model.config.quantization:
        raise SoraError(f"{model_dir}: is quantized; prune or quantize the fp32 model")
    return model, load_tokenizer(model_dir), load_meta(model_dir)


def _prepared(path: Path, model_dir: Path, overrides: list[str]):
    """The data of a recipe (its data: section) or of a data config, read through the model's tokenizer."""
    from sora.data import prepare_data, read_data_config
    from sora.models import load_tokenizer

    return prepare_data(read_data_config(path, overrides), tokenizer=load_tokenizer(model_dir))


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.replace(",", " ").split() if n.strip()]


@app.command("prune")
def prune_command(
    model_dir: Path = typer.Argument(..., help="an fp32 model folder"),
    out: Path = typer.Option(..., "--out", help="folder for the pruned model"),
    plan: Path = typer.Option(None, "--plan", help="a pruning plan YAML (keys: remove, heads, neurons, scope, "
                              "scores, sparsity; see docs/compression.md)"),
    heads: str = typer.Option(None, "--heads", help="particle names to remove, comma-separated: "
                              "layers.1.attn.head.3,layers.0.ffn.neuron.7,layers.2"),
    fraction: float = typer.Option(None, "--fraction", help="fraction of all heads to remove, least important first"),
    neurons: float = typer.Option(None, "--neurons", help="fraction of feed-forward neurons to remove"),
    scores: Path = typer.Option(None, "--scores", help="analysis.json from sora analyze (default: weight magnitudes)"),
    scope: bool = typer.Option(None, "--global/--per-layer", help="rank across all layers, or within each layer",
                              show_default=False),
    sparsity: float = typer.Option(None, "--sparsity", help="unstructured: zero this fraction of block weights"),
    vocabulary: Path = typer.Option(None, "--vocabulary", help="a recipe or data YAML: keep only the tokens its "
                                    "training texts use (WordPiece models; the tokenizer is rebuilt to match)"),
    force: bool = force_option(),
) -> None:
    """Remove heads, neurons, layers and unused tokens for real (smaller matrices), or zero weights by magnitude."""
    from sora.compress import (PruneConfig, magnitude_prune, magnitude_scores, plan_from_names, plan_from_scores,
                               prune_model, read_scores)
    from sora.models import save_model, summary

    if plan is not None and (heads or fraction is not None or neurons is not None or sparsity is not None):
        raise SoraError("--plan already says what to remove: give either --plan or --heads/--fraction/--neurons/--sparsity")
    if plan is not None:
        config = load(PruneConfig, plan)
        where = str(plan)
    else:
        data = {"remove": _names(heads or ""), "heads": fraction, "neurons": neurons, "sparsity": sparsity,
                "scores": str(scores) if scores else None}
        config = validate(PruneConfig, {k: v for k, v in data.items() if v not in (None, [])}, source="options")
        where = "--heads"
    if scope is not None:
        config.scope = "global" if scope else "per_layer"
    if config.vocabulary and vocabulary is None:
        raise SoraError(f"{where}: vocabulary: true needs --vocabulary DATA (whose training texts decide what stays)")
    if not config.structural and config.sparsity is None and vocabulary is None:
        raise SoraError("nothing to prune: give --plan, --heads NAMES, --fraction F, --neurons F, --sparsity S "
                        "or --vocabulary DATA")
    claim(out, "model", force, reads=(model_dir, plan, scores, vocabulary))
    model, tokenizer, meta = _load_fp32(model_dir)
    console = Console()
    before = summary(model)
    info: dict = {"config": config.model_dump(mode="json")}
    pruned = model
    if config.structural:
        from sora.compress.plan import PrunePlan

        plan_ = plan_from_names(model, config.remove, where=where) if config.remove else PrunePlan()
        if config.heads or config.neurons:
            if config.scores:
                table, source = read_scores(config.scores), config.scores
            else:
                table, source = magnitude_scores(model), "weight magnitudes"
                console.print("scores: weight magnitudes (no --scores given; `sora analyze` measures importance on data)")
            plan_.add(plan_from_scores(model, table, heads=config.heads, neurons=config.neurons, scope=config.scope,
                                       normalize=config.normalize, source=str(source)))
        info["removed"] = plan_.names()
        info.update(plan_.summary(model))
        pruned = prune_model(model, plan_)
    if config.sparsity is not None:
        report = magnitude_prune(pruned, config.sparsity, scope=config.sparsity_scope)
        info["sparsity"] = report
    if vocabulary is not None:
        from sora.compress import prune_vocabulary

        data = _prepared(vocabulary, model_dir, [])
        result = prune_vocabulary(pruned, data.tokenizer, data.texts("train"))
        pruned, tokenizer, info["vocabulary"] = result.model, result.rebuild(tokenizer), result.report
        console.print(f"vocabulary {result.report['vocabulary_before']:,} -> {result.report['vocabulary_after']:,} "
                      f"tokens (used by {len(data.texts('train')):,} training texts, plus single characters)")
    after = summary(pruned)
    info["before"], info["after"] = before, after
    save_model(pruned, out, tokenizer=tokenizer, meta={**meta, "stage": "pruned", "pruned_from": str(model_dir),
                                                       "pruning": info})
    console.print(f"heads {before['heads']} -> {after['heads']}, neurons {before['neurons']:,} -> {after['neurons']:,}, "
                  f"layers {before['layers']} -> {after['layers']}, parameters {before['parameters']:,} -> "
                  f"{after['parameters']:,} ({after['parameters'] / before['parameters']:.1%})")
    if config.sparsity is not None:
        console.print(f"block weights zero: {info['sparsity']['block_sparsity']:.1%} (stored dense: no size or speed gain)")
    console.print(f"pruned model: {out}")


@app.command("quantize")
def quantize_command(
    model_dir: Path = typer.Argument(..., help="an fp32 model folder"),
    out: Path = typer.Option(..., "--out", help="folder for the int8 model"),
    embeddings: bool = typer.Option(True, "--embeddings/--no-embeddings", help="store token embeddings as int8"),
    min_weights: int = typer.Option(None, "--min-weights", min=0,
                                    help="quantize only Linears with at least this many weights (default 100000)"),
    min_side: int = typer.Option(None, "--min-side", min=0,
                                 help="and only Linears at least this wide on both sides (default 256)"),
    activations: str = typer.Option("tensor", "--activations", help="activation scales of every int8 Linear: "
                                    "tensor (one per call, fastest) or row (one per token, finer)"),
    data: Path = typer.Option(None, "--data", help="a recipe or data YAML: measure which Linears int8 hurts most "
                              "on its validation split and give --sensitive of them --sensitive-as"),
    sensitive: int = typer.Option(4, "--sensitive", min=0, help="with --data: how many Linears"),
    sensitive_as: str = typer.Option("row", "--sensitive-as", help="row (per-token activation scales) or fp32 maths"),
    force: bool = force_option(),
) -> None:
    """int8 dynamic quantization: int8 weights per output channel, activations quantized on the fly."""
    from sora.compress import QuantizeConfig, quantize_model, save_quantized
    from sora.compress.int8 import describe_kernels
    from sora.compress.measure import weights_bytes
    from sora.compress.sensitivity import quantize_calibrated
    from sora.configio import validate

    claim(out, "model", force, reads=(model_dir, data))
    model, tokenizer, meta = _load_fp32(model_dir)
    options = {"embeddings": embeddings, "sensitive": sensitive, "sensitive_as": sensitive_as,
               "activations": activations, "min_weights": min_weights, "min_side": min_side}
    config = validate(QuantizeConfig, {k: v for k, v in options.items() if v is not None}, source="sora quantize")
    if data is not None:
        from sora.train.tasks import task_for

        prepared = _prepared(data, model_dir, [])
        q = quantize_calibrated(model, prepared, task_for(prepared, model), config,
                                log=lambda m: Console().print(m, highlight=False, markup=False))
    else:
        q = quantize_model(model, config)
    save_quantized(q, out, tokenizer=tokenizer, meta={**meta, "stage": "int8", "quantized_from": str(model_dir)})
    info = q.config.quantization
    before, after = weights_bytes(model_dir), weights_bytes(out)
    Console().print(f"int8: {len(info['linear'])} linear layers ({len(info['linear_row_scaled'])} with per-row "
                    f"activation scales), {len(info['embeddings'])} embeddings "
                    f"({len(info['linear_fp32_compute'])} Linears int8 on disk with fp32 maths: under "
                    f"{config.min_weights:,} weights or {config.min_side} wide, or sensitive with --sensitive-as fp32)\n"
                    f"weights {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB ({before / after:.2f}x smaller)\n"
                    f"on this CPU: {describe_kernels()}\n"
                    f"int8 model: {out}")


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
    distill: float = typer.Option(None, "--distill", help="fine-tune towards the unpruned model's outputs with "
                                  "this weight (0-1) beside the labels' loss"),
    hidden: float = typer.Option(None, "--hidden", help="fine-tune each kept block towards the unpruned block's "
                                 "outputs with this weight (layer distillation)"),
    steps: int = typer.Option(None, "--steps", min=1, help="reach the budget in this many prune+fine-tune rounds"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: --set prune.scope=per_layer, or data.limit=500"),
    force: bool = force_option(),
) -> None:
    """Analyze importance, prune, optionally fine-tune, quantize, and evaluate every variant."""
    from sora.compress import CompressConfig
    from sora.compress.stage import compress_model

    mapping, lines = read_mapping(data)
    recipe = isinstance(mapping.get("data"), dict)
    section: dict = {}
    if config_file is not None:
        section, _ = read_mapping(config_file)
    elif recipe and isinstance(mapping.get("compress"), dict):
        section = mapping["compress"]
    apply_overrides(section, [o for o in overrides if not o.startswith("data.")])
    prune = section.setdefault("prune", {}) if isinstance(section.get("prune", {}), dict) else section["prune"]
    for key, value in (("heads", heads), ("neurons", neurons), ("scores", str(scores) if scores else None)):
        if value is not None:
            prune[key] = value
    if finetune_epochs is not None or lora or distill is not None or hidden is not None:
        ft = section.setdefault("finetune", {}) or {}
        if finetune_epochs is not None:
            ft["epochs"] = finetune_epochs
        if lora:
            ft.setdefault("lora", {})
        if distill is not None:
            ft["distill"] = distill
        if hidden is not None:
            ft["hidden"] = hidden
        section["finetune"] = ft
    if steps is not None:
        section["steps"] = steps
    where = str(config_file or data)
    config = validate(CompressConfig, section, source=where, prefix=() if config_file else ("compress",),
                      lines=None if config_file else lines)
    claim(out, "compress", force, reads=(model_dir, data, config_file, scores))
    prepared = _prepared(data, model_dir, [o.removeprefix("data.") for o in overrides if o.startswith("data.")])
    console = Console()
    compress_model(model_dir, prepared, config, out, log=lambda m: console.print(m, highlight=False, markup=False))
    console.print(f"report: {out / 'report.json'}, {out / 'report.md'}, {out / 'plot.png'}")
