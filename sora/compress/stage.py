"""The compress stage: importance -> prune -> (fine-tune) -> quantize -> evaluate every variant.

``compress_model(model_dir, data, config, out_dir)`` is what ``sora compress`` and a recipe's
``compress:`` section run. It writes, atomically (a sibling folder renamed into place)::

    OUT/pruned/         the pruned (and fine-tuned) model folder
    OUT/int8/           the fp32 model, int8
    OUT/pruned_int8/    the pruned model, int8
    OUT/report.json     every variant: task metrics, parameters, bytes, latency ratios; the plan
    OUT/report.md       the same as a table
    OUT/plot.png        metric against latency, batch 1 and batch 32

Importance comes from ``prune.scores`` (an analysis.json) or is measured on the validation split
(never the test split, which only scores the variants).
"""

from __future__ import annotations

import copy
import json
import re
from itertools import islice
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from sora.atomic import staged_dir
from sora.compress.config import CompressConfig
from sora.compress.finetune import finetune
from sora.compress.int8 import kernel_choice
from sora.compress.measure import compare_latency, count_weights, timing_batches, weights_bytes
from sora.compress.plan import PrunePlan, plan_from_names, plan_from_scores
from sora.compress.quantize import is_quantized, save_quantized
from sora.compress.report import plot, table
from sora.compress.scores import block_scores, data_scores, read_scores
from sora.compress.sensitivity import quantize_calibrated
from sora.compress.structural import prune_model, renamed
from sora.compress.unstructured import magnitude_prune
from sora.compress.vocabulary import VocabularyPruning, prune_vocabulary
from sora.configio import validate
from sora.errors import SoraError
from sora.models import load_meta, load_model, load_tokenizer, save_model
from sora.models.anatomy import summary
from sora.models.names import block_paths

BLOCK = re.compile(r"(?:.*\.)?layers\.\d+")  # a block's name: layers.1, decoder.layers.0
FOLDERS = {"pruned": "pruned", "int8": "int8", "pruned+int8": "pruned_int8"}
REPORT_JSON, REPORT_MD, PLOT = "report.json", "report.md", "plot.png"


def compress_model(model_dir: str | Path, data, config: CompressConfig | dict | None, out_dir: str | Path, *,
                   log: Callable[[str], None] = print) -> dict:
    """Compress the model in ``model_dir`` on ``data`` (a prepared dataset); write and return the report."""
    from sora.train.tasks import evaluate, task_for
    from sora.train.trainer import has_split

    if not isinstance(config, CompressConfig):
        config = validate(CompressConfig, config or {}, source="compress", prefix=("compress",))
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model = load_model(model_dir)
    if is_quantized(model):
        raise SoraError(f"{model_dir}: already quantized; compress starts from an fp32 model")
    tokenizer, meta = load_tokenizer(model_dir), load_meta(model_dir)
    task = task_for(data, model)
    eval_split = "test" if has_split(data, "test") else "validation"
    if not has_split(data, eval_split):
        raise SoraError("compress: the data has neither a test nor a validation split to evaluate on")

    with staged_dir(out_dir) as tmp:
        pruned, prune_info, vocabulary = _prune(model, data, task, config, log)
        variants: dict[str, nn.Module] = {"fp32": model}
        if pruned is not None:
            variants["pruned"] = pruned
        # a pruned vocabulary has its own tokenizer: pruned variants read the texts through it
        pruned_data = data.retokenized(vocabulary.tokenizer) if vocabulary else data
        data_of = {name: pruned_data if "pruned" in name else data for name in ("fp32", *FOLDERS)}
        tokenizer_of = {name: vocabulary.rebuild(tokenizer) if vocabulary and tokenizer and "pruned" in name
                        else tokenizer for name in data_of}
        if config.quantize is not None:
            variants["int8"] = quantize_calibrated(model, data, task, config.quantize, log=log)
        pruned_quantize = config.pruned_quantize or config.quantize
        if pruned is not None and pruned_quantize is not None:
            variants["pruned+int8"] = quantize_calibrated(pruned, pruned_data, task, pruned_quantize, log=log)
        if len(variants) == 1:
            raise SoraError("compress: nothing to do (no pruning and quantize: null)")

        folders = {"fp32": model_dir}
        for name, variant in variants.items():
            if name == "fp32":
                continue
            folders[name] = tmp / FOLDERS[name]
            info = {**meta, "stage": name, "compressed_from": str(model_dir),
                    **({"pruning": prune_info} if "pruned" in name else {})}
            save = save_quantized if is_quantized(variant) else save_model
            save(variant, folders[name], tokenizer=tokenizer_of[name], meta=info)

        log(f"evaluating {len(variants)} variants on the {eval_split} split")
        results = {}
        for name, variant in variants.items():
            metrics = evaluate(variant, data_of[name].loader(eval_split, config.eval_batch_size), task)
            results[name] = {"metrics": metrics, "parameters": count_weights(variant),
                             "bytes": weights_bytes(folders[name]), **_shape(variant)}
            log(f"  {name}: {task.monitor} {metrics.get(task.monitor, float('nan')):.4f}")

        timings = _latencies(variants, data_of, task, eval_split, config, log)
        base = results["fp32"]
        for name, r in results.items():
            r["smaller"] = base["bytes"] / r["bytes"]
            r["latency_s"] = {str(b): timings[b][name] for b in config.latency_batches}
            r["speedup"] = {str(b): timings[b]["fp32"] / timings[b][name] for b in config.latency_batches}
            if name != "fp32":
                r["metric_change"] = _change(r["metrics"].get(task.monitor), base["metrics"].get(task.monitor))
        report = {
            "name": meta.get("recipe") or model_dir.name, "model_dir": str(model_dir), "task": task.name,
            "metric": task.monitor, "eval_split": eval_split, "latency_batches": config.latency_batches,
            "threads": torch.get_num_threads(), "int8_kernel": kernel_choice(), "config": config.model_dump(mode="json"),
            "pruning": prune_info, "variants": results,
            "folders": {k: str(out_dir / Path(v).name) for k, v in folders.items() if k != "fp32"},
            "latency_method": f"in-process, warm-up then best of {config.latency_repeats} (interleaved rounds); "
                              "speed-up = fp32 seconds / variant seconds on the same batches",
        }
        (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2, default=float) + "\n")
        (tmp / REPORT_MD).write_text(f"# {report['name']}: compression\n\n{table(report)}")
        plot(report, tmp / PLOT)
    log(table(report))
    return report


def _change(value, base):
    return None if value is None or base is None else value - base


def _shape(model: nn.Module) -> dict:
    s = summary(model)
    return {"heads": s["heads"], "neurons": s["neurons"], "layers": s["layers"]}


def _step_fraction(budget: float | None, k: int, steps: int) -> float | None:
    """Fraction of the *current* units to remove at round k so that round ``steps`` reaches ``budget``."""
    if not budget:
        return None
    before, after = 1 - budget * (k - 1) / steps, 1 - budget * k / steps
    return 0.0 if before <= 0 else 1 - after / before


def _prune(model: nn.Module, data, task, config: CompressConfig, log
           ) -> tuple[nn.Module | None, dict, VocabularyPruning | None]:
    """Round 1 first removes the named particles and the dropped blocks (original numbering), then each
    round removes its share of the head and neuron budgets from what is left, and fine-tunes. The
    vocabulary goes last: it needs no fine-tuning (the kept rows are unchanged)."""
    from sora.train.trainer import has_split

    pc = config.prune
    if not pc.structural and pc.sparsity is None and not pc.vocabulary:
        return None, {}, None
    score_split = "validation" if has_split(data, "validation") else "train"
    file_scores = read_scores(pc.scores) if pc.scores else None

    def measured() -> list[dict]:
        return list(islice(data.loader(score_split, 32), config.importance_batches))

    current, rounds = model, []
    origins = {name: name for name in block_paths(model)}  # each block of ``current`` -> its name in ``model``
    for k in range(1, config.steps + 1 if pc.structural else 1):
        plan, removed = PrunePlan(), []
        if k == 1 and (pc.remove or pc.layers):
            if pc.remove:
                plan.add(plan_from_names(current, pc.remove, where="compress.prune.remove"))
            if pc.layers:
                if file_scores is not None and any(BLOCK.fullmatch(n) for n in file_scores):
                    scores, source = file_scores, pc.scores
                else:
                    scores, source = block_scores(current, measured()), f"block ablation on {score_split} data"
                plan.add(plan_from_scores(current, scores, layers=pc.layers, source=str(source)))
            counts = plan.summary(current)
            removed += plan.names()
            names = renamed(current, plan)
            origins = {names[b]: original for b, original in origins.items() if b in names}
            if file_scores is not None:  # carry the scores over to the new numbering
                file_scores = {names[n]: v for n, v in file_scores.items() if n in names}
            current = prune_model(current, plan)
        else:
            counts = None
        if pc.heads or pc.neurons:
            if k == 1 and file_scores is not None:
                scores, source = file_scores, pc.scores
            else:  # after a round of pruning and fine-tuning, measure the model as it is now
                batches = measured()
                scores, source = data_scores(current, batches), f"gradients on {len(batches)} {score_split} batches"
            plan = plan_from_scores(current, scores, heads=_step_fraction(pc.heads, k, config.steps),
                                    neurons=_step_fraction(pc.neurons, k, config.steps), scope=pc.scope,
                                    normalize=pc.normalize, source=str(source))
            step_counts = plan.summary(current)
            if counts is None:
                counts = step_counts
            else:
                for key in ("heads_removed", "neurons_removed"):
                    counts[key] += step_counts[key]
            removed += plan.names()
            current = prune_model(current, plan)
        log(f"prune round {k}/{config.steps}: {counts['heads_removed']}/{counts['heads_total']} heads, "
            f"{counts['neurons_removed']}/{counts['neurons_total']} neurons, layers {counts['layers_removed']}")
        entry = {"round": k, "removed": removed, **counts}
        if config.finetune is not None:
            entry["finetune"] = finetune(current, data, task, config.finetune, teacher=model, origins=origins,
                                         log=log)
        rounds.append(entry)
    info: dict = {"rounds": rounds, "before": summary(model),
                  "note": "names in each round use the numbering of the model at that point"}
    if pc.sparsity is not None:
        if current is model:
            current = copy.deepcopy(model)
        report = magnitude_prune(current, pc.sparsity, scope=pc.sparsity_scope)
        info["sparsity"] = {k: v for k, v in report.items() if k != "matrices"}
        log(f"magnitude pruning: {report['block_sparsity']:.1%} of block weights are zero")
    vocabulary = None
    if pc.vocabulary:
        vocabulary = prune_vocabulary(current, data.tokenizer, data.texts("train"))
        current = vocabulary.model
        info["vocabulary"] = vocabulary.report
        log(f"vocabulary: {vocabulary.report['vocabulary_before']:,} -> {vocabulary.report['vocabulary_after']:,} "
            f"tokens (those the training texts use, and single characters)")
    info["after"] = summary(current)
    return current.eval(), info, vocabulary


def _latencies(variants: dict[str, nn.Module], data_of: dict, task, split: str, config: CompressConfig, log) -> dict:
    runs = {name: (lambda m: (lambda batch: task.forward(m, batch)))(m.eval()) for name, m in variants.items()}
    timings = {}
    for b in config.latency_batches:
        batches = {name: timing_batches(data_of[name], split, b) for name in variants}
        if not batches["fp32"]:
            raise SoraError(f"compress: the {split} split has no batch of {b} for latency")
        timings[b] = compare_latency(runs, batches, repeats=config.latency_repeats)
        log(f"latency batch {b}: " + ", ".join(f"{k} {timings[b]['fp32'] / v:.2f}x" for k, v in timings[b].items()))
    return timings


