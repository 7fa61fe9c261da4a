"""Importance scores keyed by particle name: read from analysis.json, or from the weights alone.

``sora analyze`` writes scores keyed by particle names (``layers.1.attn.head.3``,
``layers.1.ffn.neuron.17``). The reader accepts them wherever they sit in the JSON (flat, nested
under sections, or as ``{"name": ..., "score": ...}`` records), so pruning does not break when the
report gains sections. Without data, ``magnitude_scores`` ranks units by the size of their weights:
a weak proxy for importance, which is why data-driven scores are preferred whenever a dataset is at
hand.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn

from sora.analyze import ablation_scores, gradient_scores
from sora.analyze.checked_rankings import head_rankings, measure_rankings, neuron_rankings
from sora.analyze.checks import random_scores
from sora.analyze.config import AnalyzeConfig
from sora.configio import read_json_file
from sora.errors import SoraError
from sora.models.names import attention_modules, block_paths, feedforward_modules
from sora.tasks import infer_task

UNIT = re.compile(r"^(?:.*\.)?(?:head|neuron)\.\d+$")
SCORE_KEYS = ("score", "importance", "value")


def read_scores(path: str | Path) -> dict[str, float]:
    path = Path(path)
    data = read_json_file(path, "scores", expect=object)  # binary, missing, not JSON: one line naming the file
    scores = analysis_scores(data) if isinstance(data, dict) else {}
    if not scores:
        _collect(data, scores)
    if not scores:
        raise SoraError(
            f"{path}: no importance scores found (expected entries such as "
            '"layers.1.attn.head.3": 0.42, as written by sora analyze)'
        )
    bad = [name for name, value in scores.items() if not math.isfinite(value)]
    if bad:
        raise SoraError(f"{path}: score of {bad[0]!r} is not a finite number")
    return scores


def analysis_scores(data: dict) -> dict[str, float]:
    """The sections of ``sora analyze``'s analysis.json: the scores of the rankings its check chose (heads and
    neurons), else head rows and per-layer neuron Taylor lists.

    Without a check a head's score is its gradient importance (Michel et al., normalised per layer) or, when
    only ablation was measured, the loss increase its removal caused.
    """
    scores: dict[str, float] = {}
    checked = data.get("rankings") if isinstance(data.get("rankings"), dict) else {}
    for check in checked.values():
        if isinstance(check, dict) and isinstance(check.get("scores"), dict):
            scores.update({k: float(v) for k, v in check["scores"].items() if isinstance(v, (int, float))})
    units = {name.rsplit(".", 2)[-2] for name in scores}
    for row in (data.get("heads") or []) if "head" not in units else []:
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            continue
        if isinstance(row.get("gradient"), (int, float)):
            scores[row["name"]] = float(row["gradient"])
        elif isinstance(row.get("ablation"), dict) and isinstance(row["ablation"].get("loss"), (int, float)):
            scores[row["name"]] = float(row["ablation"]["loss"])
    for row in data.get("layers") or []:  # ablation of whole blocks: the loss increase when skipped
        if isinstance(row, dict) and isinstance(row.get("name"), str) and isinstance(row.get("loss"), (int, float)):
            scores[row["name"]] = float(row["loss"])
    neurons = data.get("neurons") if "neuron" not in units else None
    if isinstance(neurons, dict):
        for path, section in neurons.items():
            taylor = section.get("taylor") if isinstance(section, dict) else None
            if isinstance(taylor, list):
                for i, value in enumerate(taylor):
                    if isinstance(value, (int, float)):
                        scores[f"{path}.neuron.{i}"] = float(value)
    return scores


def _collect(node, out: dict[str, float]) -> None:
    if isinstance(node, dict):
        name = node.get("name")
        if isinstance(name, str) and UNIT.match(name):
            for key in SCORE_KEYS:
                if isinstance(node.get(key), (int, float)) and not isinstance(node.get(key), bool):
                    out[name] = float(node[key])
                    return
        for key, value in node.items():
            if isinstance(key, str) and UNIT.match(key):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[key] = float(value)
                    continue
                if isinstance(value, dict):
                    for k in SCORE_KEYS:
                        if isinstance(value.get(k), (int, float)):
                            out[key] = float(value[k])
                            break
                    continue
            _collect(value, out)
    elif isinstance(node, list):
        for item in node:
            _collect(item, out)


@torch.no_grad()
def magnitude_scores(model: nn.Module) -> dict[str, float]:
    """Data-free scores: a head's ||W_v rows|| * ||W_o columns||, a neuron's ||w_in|| * ||w_out||."""
    scores: dict[str, float] = {}
    for path, attn in attention_modules(model):
        dh, wv, wo = attn.head_dim, attn.v_proj.weight, attn.out_proj.weight  # sizes spelt out: H may be 0
        v = wv.view(attn.n_heads, dh, wv.shape[1]).flatten(1).norm(dim=1)  # (H,)
        o = wo.view(wo.shape[0], attn.n_heads, dh).transpose(0, 1).flatten(1).norm(dim=1)  # (H,)
        for h, s in enumerate((v * o * attn.head_gate).tolist()):
            scores[f"{path}.head.{h}"] = s
    for path, ffn in feedforward_modules(model):
        w_in = ffn.fc_in.weight.norm(dim=1)  # (F,)
        if ffn.fc_gate is not None:
            w_in = w_in * ffn.fc_gate.weight.norm(dim=1)
        w_out = ffn.fc_out.weight.norm(dim=0)  # (F,)
        for i, s in enumerate((w_in * w_out * ffn.neuron_mask).tolist()):
            scores[f"{path}.neuron.{i}"] = s
    return scores


def data_scores(model: nn.Module, batches: list[dict], task: str | None = None) -> dict[str, float]:
    """Head importance (Michel et al.) and neuron Taylor scores measured on ``batches`` (sora.analyze)."""
    task = _task_with_loss(model, batches, task)
    grads = gradient_scores(model, batches, task)
    scores: dict[str, float] = {}
    for path, values in grads.heads.items():
        scores.update({f"{path}.head.{h}": float(v) for h, v in enumerate(values)})
    for path, values in grads.taylor.items():
        scores.update({f"{path}.neuron.{i}": float(v) for i, v in enumerate(values)})
    return scores


def block_scores(model: nn.Module, batches: list[dict], task: str | None = None) -> dict[str, float]:
    """Each block's importance: the increase in loss when it alone is skipped (sora.analyze ablation)."""
    task = task or infer_task(model, batches[0])
    blocks = block_paths(model)
    return {name: row["loss"] for name, row in ablation_scores(model, batches, task, blocks).items()}


def choice_record(check: dict) -> dict:
    """What a compression report keeps of a ranking check: the ranking used, why, and what lost to random."""
    return {
        "ranking": check["best"],
        "why": check["why"],
        "worse_than_random": check["flagged"],
        "auc": {name: round(r["auc"], 4) for name, r in check["rankings"].items()},
        "random_auc": round(check["random"]["auc"], 4),
        "examples": check["examples"],
    }


def read_choice(path: str | Path) -> dict:
    """The rankings an analysis.json chose, by unit kind ({} when it has no ranking check)."""
    data = read_json_file(Path(path), "scores", expect=object)
    checked = data.get("rankings") if isinstance(data, dict) else None
    if not isinstance(checked, dict):
        return {}
    try:
        return {unit: choice_record(c) for unit, c in checked.items() if isinstance(c, dict) and "best" in c}
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise SoraError(
            f"{path}: its ranking check ('rankings.{next(iter(checked))}') is incomplete or damaged ({e!r}); "
            "re-run sora analyze"
        ) from None


def checked_scores(
    model: nn.Module,
    batches: list[dict],
    task: str | None = None,
    check_batches: list[dict] | None = None,
    *,
    heads: bool = True,
    neurons: bool = True,
) -> tuple[dict[str, float], dict]:
    """Scores of the best head and neuron rankings, each checked against random order on ``check_batches``
    (default: ``batches``), and the record of the choice (never a ranking that loses to random)."""
    task = _task_with_loss(model, batches, task)
    grads = gradient_scores(model, batches, task)
    config = AnalyzeConfig(
        methods=["gradient", "neurons", "pruning"],
        pruning_seeds=3,
        rankings=None if heads else [],
        neuron_rankings=None if neurons else [],
    )
    checks = measure_rankings(model, batches, check_batches or batches, task, config, grads)
    scores: dict[str, float] = {}
    for check in checks.values():
        scores.update(check["scores"])
    return scores, {unit: choice_record(c) for unit, c in checks.items()}


def ranked_scores(model: nn.Module, batches: list[dict], choice: dict, task: str | None = None) -> dict[str, float]:
    """The chosen rankings measured again on the model as it is now (later rounds of pruning)."""
    task = _task_with_loss(model, batches, task)
    grads = gradient_scores(model, batches, task)
    scores: dict[str, float] = {}
    units = {
        "heads": [f"{p}.head.{h}" for p, a in attention_modules(model) for h in range(a.n_heads)],
        "neurons": [f"{p}.neuron.{i}" for p, f in feedforward_modules(model) for i in range(f.d_ff)],
    }
    for unit, names in units.items():
        ranking = choice.get(unit, {}).get("ranking", "gradient" if unit == "heads" else "taylor")
        if ranking == "random":
            scores.update(random_scores(names, seed=len(names)))
        elif unit == "heads":
            scores.update(head_rankings(model, batches, task, [ranking], grads)[ranking])
        else:
            scores.update(neuron_rankings(model, batches, task, [ranking], grads)[ranking])
    return scores


def _task_with_loss(model: nn.Module, batches: list[dict], task: str | None) -> str:
    if not batches:
        raise SoraError("importance needs at least one batch of data")
    task = task or infer_task(model, batches[0])
    if task == "features":
        raise SoraError(
            "a feature extractor (arch encoder) has no loss to measure importance against; "
            "give scores (analysis.json) or explicit particle names"
        )
    return task
