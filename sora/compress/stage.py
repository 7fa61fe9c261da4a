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
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from sora.analyze.reconstruct import tune_pruned
from sora.atomic import staged_dir
from sora.compress.config import CompressConfig
from sora.compress.finetune import finetune
from sora.compress.measure import compare_latency, count_weights, timing_batches, weights_bytes
from sora.compress.prune import PruneStep, prune_by_plan
from sora.compress.quantize import is_quantized, save_quantized
from sora.compress.report import plot, table
from sora.compress.scores import block_scores, checked_scores, ranked_scores, read_choice, read_scores
from sora.compress.sensitivity import quantize_calibrated
from sora.compress.structural import renamed
from sora.compress.unstructured import magnitude_prune
from sora.compress.vocabulary import VocabularyPruning, prune_vocabulary
from sora.configio import validate
from sora.errors import SoraError
from sora.models import load_meta, load_model, load_tokenizer, save_model
from sora.models.anatomy import summary
from sora.models.names import block_paths
from sora.particles.int8 import kernel_choice
from sora.tasks import evaluate, task_for

BLOCK = re.compile(r"(?:.*\.)?layers\.\d+")  # a block's name: layers.1, decoder.layers.0
FOLDERS = {"pruned": "pruned", "int8": "int8", "pruned+int8": "pruned_int8"}
REPORT_JSON, REPORT_MD, PLOT = "report.json", "report.md", "plot.png"


@dataclass
class Variant:
    """One model the stage compares: fp32 (the input), pruned, int8, pruned+int8."""

    model: nn.Module
    data: Any  # the prepared data it reads: a pruned vocabulary reads the texts through its own tokenizer
    tokenizer: Any  # what its folder gets (None when the input folder has none)
    folder: Path | None = None  # where it is saved; the fp32 model's is the input folder


def compress_model(
    model_dir: str | Path,
    data,
    config: CompressConfig | dict | None,
    out_dir: str | Path,
    *,
    log: Callable[[str], None] = print,
) -> dict:
    """Compress the model in ``model_dir`` on ``data`` (a prepared dataset); write and return the report."""
    if not isinstance(config, CompressConfig):
        config = validate(CompressConfig, config or {}, source="compress", prefix=("compress",))
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model = _load_fp32(model_dir)
    tokenizer, meta = load_tokenizer(model_dir), load_meta(model_dir)
    task = task_for(data, model)
    eval_split = _eval_split(data)
    with staged_dir(out_dir) as tmp:
        prune_info, variants = _variants(Variant(model, data, tokenizer, model_dir), task, config, log)
        _save(variants, tmp, meta, model_dir, prune_info)
        results = _measure(variants, task, eval_split, config, log)
        report = {
            "name": meta.get("recipe") or model_dir.name,
            "model_dir": str(model_dir),
            **_report(out_dir, task, eval_split, config, prune_info, variants, results),
        }
        _write(report, tmp)
    log(table(report))
    return report


def _load_fp32(model_dir: Path) -> nn.Module:
    model = load_model(model_dir)
    if is_quantized(model):
        raise SoraError(f"{model_dir}: already quantized; compress starts from an fp32 model")
    return model


def _eval_split(data) -> str:
    """The test split scores the variants; without one, the validation split."""
    split = "test" if data.has_split("test") else "validation"
    if not data.has_split(split):
        raise SoraError("compress: the data has neither a test nor a validation split to evaluate on")
    return split


def _variants(fp32: Variant, task, config: CompressConfig, log) -> tuple[dict, dict[str, Variant]]:
    """The pruning record, and every variant by name: fp32, pruned, int8, pruned+int8 (those configured)."""
    model, data, tokenizer = fp32.model, fp32.data, fp32.tokenizer
    pruned, prune_info, vocabulary = _prune(model, data, task, config, log)
    variants = {"fp32": fp32}
    if pruned is not None:
        # a pruned vocabulary has its own tokenizer: pruned variants read the texts through it
        pruned_data = data.retokenized(vocabulary.tokenizer) if vocabulary else data
        pruned_tokenizer = vocabulary.rebuild(tokenizer) if vocabulary and tokenizer else tokenizer
        variants["pruned"] = Variant(pruned, pruned_data, pruned_tokenizer)
    if config.quantize is not None:
        variants["int8"] = Variant(quantize_calibrated(model, data, task, config.quantize, log=log), data, tokenizer)
    pruned_quantize = config.pruned_quantize or config.quantize
    if pruned is not None and pruned_quantize is not None:
        p = variants["pruned"]
        variants["pruned+int8"] = Variant(
            quantize_calibrated(pruned, p.data, task, pruned_quantize, log=log), p.data, p.tokenizer
        )
    if len(variants) == 1:
        raise SoraError("compress: nothing to do (no pruning and quantize: null)")
    return prune_info, variants


def _save(variants: dict[str, Variant], tmp: Path, meta: dict, model_dir: Path, prune_info: dict) -> None:
    """Each variant but fp32 into its folder of the staged output, its metadata saying what it is."""
    for name, variant in variants.items():
        if name == "fp32":
            continue
        variant.folder = tmp / FOLDERS[name]
        info = {
            **meta,
            "stage": name,
            "compressed_from": str(model_dir),
            **({"pruning": prune_info} if "pruned" in name else {}),
        }
        save = save_quantized if is_quantized(variant.model) else save_model
        save(variant.model, variant.folder, tokenizer=variant.tokenizer, meta=info)


def _measure(variants: dict[str, Variant], task, split: str, config: CompressConfig, log) -> dict[str, dict]:
    """Every variant's metrics, size and shape on ``split``, then its latency and what changed against fp32."""
    log(f"evaluating {len(variants)} variants on the {split} split")
    results = {}
    for name, v in variants.items():
        metrics = evaluate(v.model, v.data.loader(split, config.eval_batch_size), task)
        results[name] = {
            "metrics": metrics,
            "parameters": count_weights(v.model),
            "bytes": weights_bytes(v.folder),
            **_shape(v.model),
        }
        log(f"  {name}: {task.monitor} {metrics.get(task.monitor, float('nan')):.4f}")
    timings = _latencies(variants, task, split, config, log)
    base = results["fp32"]
    for name, r in results.items():
        r["smaller"] = base["bytes"] / r["bytes"]
        r["latency_s"] = {str(b): timings[b][name] for b in config.latency_batches}
        r["speedup"] = {str(b): timings[b]["fp32"] / timings[b][name] for b in config.latency_batches}
        if name != "fp32":
            r["metric_change"] = _change(r["metrics"].get(task.monitor), base["metrics"].get(task.monitor))
    return results


def _report(
    out_dir: Path,
    task,
    eval_split: str,
    config: CompressConfig,
    prune_info: dict,
    variants: dict[str, Variant],
    results: dict,
) -> dict:
    """What report.json says besides the model's name and folder: the settings, the pruning, every variant."""
    return {
        "task": task.name,
        "metric": task.monitor,
        "eval_split": eval_split,
        "latency_batches": config.latency_batches,
        "threads": torch.get_num_threads(),
        "int8_kernel": kernel_choice(),
        "config": config.model_dump(mode="json"),
        "pruning": prune_info,
        "variants": results,
        "folders": {k: str(out_dir / v.folder.name) for k, v in variants.items() if k != "fp32"},
        "latency_method": f"in-process, warm-up then best of {config.latency_repeats} (interleaved rounds); "
        "speed-up = fp32 seconds / variant seconds on the same batches",
    }


def _write(report: dict, folder: Path) -> None:
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=2, default=float) + "\n")
    (folder / REPORT_MD).write_text(f"# {report['name']}: compression\n\n{table(report)}")
    plot(report, folder / PLOT)


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


def _prune(
    model: nn.Module, data, task, config: CompressConfig, log
) -> tuple[nn.Module | None, dict, VocabularyPruning | None]:
    """The pruned model (None when nothing is pruned), its record and the vocabulary pruning (if any):
    the structural rounds first, then magnitude sparsity, then the vocabulary, which needs no
    fine-tuning (the kept rows are unchanged)."""
    pc = config.prune
    if not pc.structural and pc.sparsity is None and not pc.vocabulary:
        return None, {}, None
    rounds = Rounds(model, data, task, config, log)
    info: dict = {
        "rounds": rounds.run(),
        "ranking": rounds.choice,
        "before": summary(model),
        "note": "names in each round use the numbering of the model at that point",
    }
    current = rounds.current
    if pc.sparsity is not None:
        current = current if current is not model else copy.deepcopy(model)  # zeroes weights in place
        report = magnitude_prune(current, pc.sparsity, scope=pc.sparsity_scope)
        info["sparsity"] = {k: v for k, v in report.items() if k != "matrices"}
        log(f"magnitude pruning: {report['block_sparsity']:.1%} of block weights are zero")
    vocabulary = None
    if pc.vocabulary:
        vocabulary = prune_vocabulary(current, data.tokenizer, data.texts("train"))
        current = vocabulary.model
        info["vocabulary"] = vocabulary.report
        log(
            f"vocabulary: {vocabulary.report['vocabulary_before']:,} -> {vocabulary.report['vocabulary_after']:,} "
            f"tokens (those the training texts use, and single characters)"
        )
    info["after"] = summary(current)
    return current.eval(), info, vocabulary


class Rounds:
    """Structural pruning in ``steps`` rounds, each a prune step (``prune_by_plan``) and a fine-tune.

    Round 1 first removes the named particles and the dropped blocks (original numbering), then each
    round removes its share of the head and neuron budgets from what is left. Scores from a file
    serve round 1, renamed to follow the removals; later rounds measure the model as it is then.
    """

    def __init__(self, model: nn.Module, data, task, config: CompressConfig, log):
        self.model, self.data, self.task, self.config, self.log = model, data, task, config, log
        self.prune = config.prune
        self.current = model  # the model as pruned so far
        self.origins = {name: name for name in block_paths(model)}  # each block of ``current`` -> its name in ``model``
        self.split = "validation" if data.has_split("validation") else "train"  # importance is never measured on test
        self.file_scores = read_scores(self.prune.scores) if self.prune.scores else None
        self.choice = read_choice(self.prune.scores) if self.prune.scores else {}  # the analysis' checked rankings
        if self.choice:
            self._log_choice()
        budgets = self.prune.heads or self.prune.neurons  # spread over the rounds; names and blocks go in round 1
        self.count = (config.steps if budgets else 1) if self.prune.structural else 0

    def run(self) -> list[dict]:
        """Every round's record; ``current`` is then the pruned (and fine-tuned) model."""
        return [self.round(k) for k in range(1, self.count + 1)]

    def round(self, k: int) -> dict:
        steps = [s for s in (self._named_and_blocks() if k == 1 else None, self._budgets(k)) if s is not None]
        counts = dict(steps[0].counts)
        for step in steps[1:]:  # the totals and the dropped blocks are those before the round
            for key in ("heads_removed", "neurons_removed"):
                counts[key] += step.counts[key]
        self.log(
            f"prune round {k}/{self.count}: {counts['heads_removed']}/{counts['heads_total']} heads, "
            f"{counts['neurons_removed']}/{counts['neurons_total']} neurons, layers {counts['layers_removed']}"
        )
        entry = {"round": k, "removed": [name for step in steps for name in step.plan.names()], **counts}
        if self.config.finetune is not None:
            entry["finetune"] = finetune(
                self.current,
                self.data,
                self.task,
                self.config.finetune,
                teacher=self.model,
                origins=self.origins,
                log=self.log,
            )
        return entry

    def _named_and_blocks(self) -> PruneStep | None:
        """The particles named in ``remove`` and the ``layers`` least important blocks."""
        pc = self.prune
        if not (pc.remove or pc.layers):
            return None
        scores, source = self._block_scores() if pc.layers else (None, "scores")
        step = prune_by_plan(
            self.current,
            remove=pc.remove,
            where="compress.prune.remove",
            scores=scores,
            source=str(source),
            layers=pc.layers,
        )
        names = renamed(self.current, step.plan)
        self.origins = {names[b]: original for b, original in self.origins.items() if b in names}
        if self.file_scores is not None:  # carry the scores over to the new numbering
            self.file_scores = {names[n]: v for n, v in self.file_scores.items() if n in names}
        self.current = step.model
        return step

    def _budgets(self, k: int) -> PruneStep | None:
        """Round k's share of the head and neuron budgets, least important first."""
        pc = self.prune
        if not (pc.heads or pc.neurons):
            return None
        if k == 1 and self.file_scores is not None:
            scores, source = self.file_scores, pc.scores
        elif k == 1:  # no analysis: check the rankings against random order here, prune by the best
            batches, check = self._batches(), self._check_batches()
            scores, self.choice = checked_scores(
                self.current, batches, check_batches=check, heads=bool(pc.heads), neurons=bool(pc.neurons)
            )
            source = f"rankings checked on {sum(len(next(iter(b.values()))) for b in check)} {self.split} examples"
            self._log_choice()
        else:  # after a round of pruning and fine-tuning, measure the chosen rankings on the model as it is now
            batches = self._batches()
            scores = ranked_scores(self.current, batches, self.choice)
            source = f"the chosen rankings on {len(batches)} {self.split} batches"
        step = prune_by_plan(
            self.current,
            scores=scores,
            source=str(source),
            heads=_step_fraction(pc.heads, k, self.config.steps),
            neurons=_step_fraction(pc.neurons, k, self.config.steps),
            scope=pc.scope,
            normalize=pc.normalize if "normalize" in pc.model_fields_set or not self.choice else False,
        )  # a checked ranking is an order across layers already: normalising it again would make another one
        if pc.reconstruct and pc.heads:
            tuned = tune_pruned(step.model, self.current, self._batches(), self.task.name)
            self.log(f"reconstruction: gates of {len(tuned)} kept heads tuned to their layers' unpruned outputs")
        self.current = step.model
        return step

    def _log_choice(self) -> None:
        for unit, c in self.choice.items():
            for name in c["worse_than_random"]:
                self.log(f"{unit} ranking '{name}' is worse than random order on {self.split} data: not used")
            self.log(f"{unit} ranked by '{c['ranking']}': {c['why']}")

    def _check_batches(self) -> list[dict]:
        taken, seen = [], 0
        for batch in self.data.loader(self.split, 64):
            if seen >= self.config.check_examples:
                break
            taken.append(batch)
            seen += len(next(iter(batch.values())))
        return taken

    def _block_scores(self) -> tuple[dict[str, float], str]:
        """Blocks' scores from the file when it has them, else measured by skipping each block."""
        if self.file_scores is not None and any(BLOCK.fullmatch(n) for n in self.file_scores):
            return self.file_scores, self.prune.scores
        return block_scores(self.current, self._batches()), f"block ablation on {self.split} data"

    def _batches(self) -> list[dict]:
        return list(islice(self.data.loader(self.split, 32), self.config.importance_batches))


def _latencies(variants: dict[str, Variant], task, split: str, config: CompressConfig, log) -> dict:
    runs = {name: (lambda m: lambda batch: task.forward(m, batch))(v.model.eval()) for name, v in variants.items()}
    timings = {}
    for b in config.latency_batches:
        batches = {name: timing_batches(v.data, split, b) for name, v in variants.items()}
        if not batches["fp32"]:
            raise SoraError(f"compress: the {split} split has no batch of {b} for latency")
        timings[b] = compare_latency(runs, batches, repeats=config.latency_repeats)
        log(f"latency batch {b}: " + ", ".join(f"{k} {timings[b]['fp32'] / v:.2f}x" for k, v in timings[b].items()))
    return timings
