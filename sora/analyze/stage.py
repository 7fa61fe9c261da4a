"""The analysis stage: measure every particle of a trained model, then write the report.

``analyze_model`` is what ``sora analyze`` and the recipe pipeline call. Every method runs on the
same batches (the first ``max_batches`` of a split), so figures are comparable with each other.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from sora.analyze.attention import HEAD_TYPES, attention_statistics, special_token_ids
from sora.analyze.checked_rankings import measure_rankings
from sora.analyze.checks import headline
from sora.analyze.config import AnalyzeConfig
from sora.analyze.examples import example_patterns
from sora.analyze.importance import ablation_scores, agreement, gradient_scores
from sora.analyze.naming import group_of, layer_label, layer_order
from sora.analyze.pairs import question_to_context
from sora.analyze.position import position_analysis
from sora.analyze.pruning import pruning_view
from sora.analyze.report import write_report
from sora.errors import SoraError
from sora.models import load_meta, load_model, load_tokenizer, summary
from sora.models.checks import model_labels
from sora.models.names import attention_modules, block_paths, feedforward_modules
from sora.tasks import as_task, check_batch, infer_task, loss_and_metric, normalise_task
from sora.tasks.device import to_device

LOSS_METHODS = {"gradient", "ablation", "pruning"}


def analyze_model(
    model_or_dir: nn.Module | str | Path,
    batches: Callable[[], Iterable[dict[str, Tensor]]] | Iterable[dict[str, Tensor]],
    config: AnalyzeConfig | dict[str, Any] | None = None,
    out_dir: str | Path = "analysis",
    task: str | None = None,
    *,
    tokenizer=None,
    labels: list[str] | None = None,
) -> dict:
    """Analyse a model on batches (a list, an iterable, or a function returning one) and write
    ``analysis.json``, ``report.html`` and its PNG figures to ``out_dir``. Returns the analysis."""
    model, tokenizer, meta, source = _load(model_or_dir, tokenizer)
    config = config if isinstance(config, AnalyzeConfig) else AnalyzeConfig.model_validate(config or {})
    labels = labels or model_labels(meta)
    device = next(model.parameters()).device
    data = take_batches(batches, config.max_batches, device)
    check_data = check_batches(batches, data, config.check_examples, device)
    task = normalise_task(task) if task else infer_task(model, data[0])
    if model.config.arch == "encoder":  # a headless feature extractor has no loss, whatever the data's task
        task = "features"
    for i, batch in enumerate(data):
        check_batch(batch, task, f"analysis batch {i}")
    torch.manual_seed(config.seed)
    was_training = model.training
    model.eval()
    try:
        result, extras = measure(
            model,
            data,
            task,
            config,
            tokenizer=tokenizer,
            labels=labels,
            preprocessing=meta.get("preprocessing"),
            check_data=check_data,
        )
    finally:
        model.train(was_training)
    result["model"] = {"source": source, "arch": model.config.arch, "input": model.config.input, **summary(model)}
    write_report(out_dir, result, extras, model)
    return result


def _load(model_or_dir, tokenizer):
    if isinstance(model_or_dir, nn.Module):
        if not hasattr(model_or_dir, "config"):
            raise SoraError("analyze_model needs a Sora model (built by sora.models.build_model) or a model folder")
        return model_or_dir, tokenizer, {}, type(model_or_dir).__name__
    model_dir = Path(model_or_dir)
    return load_model(model_dir), tokenizer or load_tokenizer(model_dir), load_meta(model_dir), str(model_dir)


def take_batches(batches, max_batches: int, device: torch.device) -> list[dict[str, Tensor]]:
    """The first ``max_batches`` batches, on the model's device, checked to be dicts of tensors."""
    source = batches() if callable(batches) else batches
    taken = []
    for i, batch in enumerate(islice(source, max_batches)):
        if not isinstance(batch, dict):
            raise SoraError(f"analysis batch {i}: expected a dict of tensors, got {type(batch).__name__}")
        taken.append(to_device(batch, device))
    if not taken:
        raise SoraError("no batches to analyse: the data split is empty")
    return taken


def check_batches(batches, data: list[dict[str, Tensor]], examples: int, device) -> list[dict[str, Tensor]]:
    """Batches of the split holding at least ``examples`` examples (all of it when it has fewer), the analysis
    batches first: the ranking check's curves. A one-shot iterable gives the analysis batches only."""
    if not (callable(batches) or isinstance(batches, (list, tuple))):
        return data
    taken, seen = [], 0
    for batch in batches() if callable(batches) else batches:
        if seen >= examples:
            break
        taken.append(to_device(batch, device))
        seen += next(v for v in batch.values() if isinstance(v, Tensor)).shape[0]
    return taken or data


def measure(
    model: nn.Module,
    data: list[dict[str, Tensor]],
    task: str,
    config: AnalyzeConfig,
    *,
    tokenizer=None,
    labels: list[str] | None = None,
    preprocessing: dict | None = None,
    check_data: list[dict[str, Tensor]] | None = None,
) -> tuple[dict, dict]:
    """Run every configured method. Returns the JSON-ready analysis and arrays for the figures."""
    methods = list(dict.fromkeys(config.methods))
    notes = []
    if task == "features":
        skipped = [m for m in methods if m in LOSS_METHODS]
        methods = [m for m in methods if m not in LOSS_METHODS]
        if skipped:
            notes.append(f"skipped {', '.join(skipped)}: a feature extractor has no loss to measure against")
    attns = [(p, a) for p, a in attention_modules(model) if a.n_heads > 0]
    ffns = [(p, f) for p, f in feedforward_modules(model) if f.d_ff > 0]
    if not attns:
        notes.append("the model has no attention heads left: head measurements are empty")
    heads = [f"{p}.head.{h}" for p, a in attns for h in range(a.n_heads)]
    n_examples = _examples(data)
    baseline = loss_and_metric(model, data, task) if task != "features" else {"loss": None, "metric": None}
    result: dict[str, Any] = {
        "task": task,
        "metric": as_task(task).metric,
        "methods": methods,
        "config": config.model_dump(mode="json"),
        "data": {"batches": len(data), "examples": n_examples, "split": config.split},
        "baseline": baseline,
        "notes": notes,
    }
    extras: dict[str, Any] = {"attention_modules": [(p, a.n_heads, a.cross) for p, a in attns]}

    grads = None
    needs_grad = bool({"gradient", "neurons", "pruning"} & set(methods))
    if needs_grad:
        grads = gradient_scores(model, data, task, seed=config.seed)
    head_ablation = layer_ablation = {}
    if "ablation" in methods:
        head_ablation = ablation_scores(model, data, task, heads, mode=config.ablation, baseline=baseline)
    if "ablation" in methods:
        layers = block_paths(model) + [p for p, _ in attns] + [p for p, _ in ffns]
        layers = sorted(layers, key=layer_order)
        layer_ablation = ablation_scores(model, data, task, layers, mode=config.ablation, baseline=baseline)
    stats = {}
    if "attention" in methods and attns:
        special = special_token_ids(model, tokenizer, config.special_tokens)
        stats = attention_statistics(model, data, task, special)

    result["heads"] = _head_rows(
        attns, grads if "gradient" in methods or "pruning" in methods else None, head_ablation, stats, model
    )
    result["layers"] = [{"name": n, **_rounded(v)} for n, v in layer_ablation.items()]
    if stats:
        result["head_types"] = dict(Counter(s["type"] for s in stats.values()))
    if "neurons" in methods and grads is not None:
        result["neurons"], extras["neurons"] = _neuron_section(grads, task)
    if "position" in methods:
        positions = position_analysis(model, min(config.max_positions, _longest(data, task, model)))
        extras["positions"] = {n: (v["kind"], v.pop("matrix").numpy()) for n, v in positions.items()}
        result["positions"] = positions
    result["agreement"] = _agreement(result["heads"], result.get("neurons"))
    if "pruning" in methods and (heads or ffns):
        ablation = {n: v["loss"] for n, v in head_ablation.items()} if config.ablation == "zero" else None
        result["rankings"] = measure_rankings(model, data, check_data or data, task, config, grads, ablation)
        result["data"]["check_examples"] = _examples(check_data or data)
        if "heads" in result["rankings"] and pruning_view(result["rankings"]["heads"]):
            result["pruning"] = pruning_view(result["rankings"]["heads"])
    pairs = question_to_context(model, data, task, tokenizer) if "attention" in methods else None
    if pairs is not None:
        result["question_to_context"] = pairs
    if attns:
        extras["examples"] = example_patterns(model, data, task, config, tokenizer, labels, stats, preprocessing)
    result["summary"] = _summary(result)
    return result, extras


def _examples(batches: list[dict[str, Tensor]]) -> int:
    return sum(next(v for v in b.values() if isinstance(v, Tensor)).shape[0] for b in batches)


def _head_rows(attns, grads, head_ablation, stats, model) -> list[dict]:
    rows = []
    for p, attn in attns:
        for h in range(attn.n_heads):
            name = f"{p}.head.{h}"
            row: dict[str, Any] = {"name": name, "group": group_of(p, attn.cross), "layer": layer_label(p), "head": h}
            if grads is not None and p in grads.heads:
                row["gradient"] = _num(grads.heads[p][h])
                row["gradient_raw"] = _num(grads.heads_raw[p][h])
            if name in head_ablation:
                row["ablation"] = _rounded(head_ablation[name])
            if name in stats:
                row["attention"] = {
                    k: _num(v) if isinstance(v, float) else v
                    for k, v in stats[name].items()
                    if k not in ("type", "cross")
                }
                row["type"] = stats[name]["type"]
            rows.append(row)
    if rows and "gradient" in rows[0]:
        for rank, row in enumerate(sorted(rows, key=lambda r: -r["gradient"]), 1):
            row["rank"] = rank
    return rows


def _neuron_section(grads, task) -> tuple[dict, dict]:
    """Per feed-forward layer: Taylor scores (None without a loss: a feature extractor has nothing to measure
    them against), mean |activation|, how often each neuron fires, and the top ten."""
    section, extras = {}, {"samples": grads.samples, "taylor": grads.taylor}
    for p, mean_abs in grads.mean_abs.items():
        taylor, active = grads.taylor.get(p), grads.active[p]
        top = np.argsort(-(taylor if taylor is not None else mean_abs))[:10]
        section[p] = {
            "neurons": int(mean_abs.size),
            "top": [
                {"name": f"{p}.neuron.{i}", "mean_abs": _num(mean_abs[i])}
                | ({"taylor": _num(taylor[i])} if taylor is not None else {})
                for i in top
            ],
            "rarely_active": int((active < 0.01).sum()),
            "taylor": [_num(v) for v in taylor] if taylor is not None else None,
            "mean_abs": [_num(v) for v in mean_abs],
            "active_fraction": [_num(v) for v in active],
        }
    return section, extras


def _agreement(heads: list[dict], neurons: dict | None) -> dict:
    out: dict[str, Any] = {}
    with_all = [r for r in heads if "gradient" in r and "ablation" in r]
    if with_all:
        out["heads"] = agreement(
            {
                "gradient": [r["gradient"] for r in with_all],
                "ablation_loss": [r["ablation"]["loss"] for r in with_all],
                "ablation_metric": [-r["ablation"]["metric"] for r in with_all],  # a drop means important
            }
        )
    if neurons and all(v["taylor"] is not None for v in neurons.values()):
        out["neurons"] = agreement(
            {
                "taylor": [t for v in neurons.values() for t in v["taylor"]],
                "mean_abs_activation": [a for v in neurons.values() for a in v["mean_abs"]],
            }
        )
    return out


def _summary(result: dict) -> dict:
    heads = result["heads"]
    s: dict[str, Any] = {"baseline": result["baseline"]}
    checks = result.get("rankings", {})
    if checks:
        s["ranking_check"] = [line for unit, c in checks.items() for line in headline(c, unit)]
        s["rankings_used"] = {unit: c["best"] for unit, c in checks.items()}
        s["worse_than_random"] = {unit: c["flagged"] for unit, c in checks.items()}
    if heads and "gradient" in heads[0]:
        ranked = sorted(heads, key=lambda r: -r["gradient"])
        s["most_important_heads"] = [r["name"] for r in ranked[:3]]
        s["least_important_heads"] = [r["name"] for r in ranked[-3:][::-1]]
    if heads and "ablation" in heads[0]:
        worst = min(heads, key=lambda r: r["ablation"]["metric"])
        s["most_harmful_head_ablation"] = {"name": worst["name"], "metric_change": worst["ablation"]["metric"]}
    if result.get("layers"):
        blocks = [r for r in result["layers"] if r["name"].split(".")[-1].isdigit()]
        if blocks:
            worst = min(blocks, key=lambda r: r["metric"])
            s["most_important_block"] = {"name": worst["name"], "metric_change": worst["metric"]}
    if result.get("head_types"):
        s["head_types"] = {t: result["head_types"][t] for t in HEAD_TYPES if t in result["head_types"]}
    if result.get("pruning"):
        s["pruning_at"] = result["pruning"]["at"]
        s["prunable_within_1_point"] = result["pruning"]["prunable_within_1_point"]
    return s


def _longest(data, task, model) -> int:
    lengths = [v.shape[1] for b in data for k, v in b.items() if k in ("inputs", "src", "tgt_in") and v.dim() == 2]
    return max(lengths) if lengths else model.config.max_len


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else float(f"{x:.6g}")


def _rounded(d: dict) -> dict:
    return {k: _num(v) if isinstance(v, (int, float)) else v for k, v in d.items()}
