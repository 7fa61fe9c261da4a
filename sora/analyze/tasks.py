"""How analysis runs a model on a batch and scores it: one forward, loss and metric per task.

Analysis needs more than a training loss: a loss *per example* (so head importance is an
expectation over examples, as in Michel et al. 2019) and a task metric that is higher-is-better
and lies in [0, 1] (so "the metric dropped one point" means the same thing for every task).

Tasks and their batches (the data-layer contract):

- ``classification``: inputs, valid, labels (B,) -> accuracy
- ``token_classification``: inputs, valid, labels (B, T) with -100 where ignored -> accuracy
- ``lm``: inputs, labels (B, T) next-token ids, -100 where ignored -> next-token accuracy
- ``seq2seq``: src, src_valid, tgt_in, tgt_out (-100 at padding), tgt_valid -> teacher-forced token accuracy
- ``ctc``: inputs, valid, targets (B, L) padded with 0 (the blank), target_lengths -> 1 - token error rate
- ``features``: inputs, valid; a feature extractor (arch ``encoder``) has no loss, so only the
  measurements that need none (attention statistics, activations, positions) apply
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.errors import SoraError

TASKS = ("classification", "token_classification", "lm", "seq2seq", "ctc", "features")
METRICS = {
    "classification": "accuracy",
    "token_classification": "accuracy",
    "lm": "token_accuracy",
    "seq2seq": "token_accuracy",
    "ctc": "1-ter",
    "features": None,
}
REQUIRED_KEYS = {
    "classification": ("inputs", "labels"),
    "token_classification": ("inputs", "labels"),
    "lm": ("inputs", "labels"),
    "seq2seq": ("src", "tgt_in", "tgt_out"),
    "ctc": ("inputs", "valid", "targets", "target_lengths"),
    "features": ("inputs",),
}
ALIASES = {  # names other parts of Sora (or people) may use for the same task
    "text_classification": "classification", "image_classification": "classification",
    "audio_classification": "classification", "sequence_classification": "classification",
    "language_modelling": "lm", "language_modeling": "lm", "causal_lm": "lm",
    "translation": "seq2seq", "speech_recognition": "ctc", "asr": "ctc",
    "tagging": "token_classification",
}


@dataclass
class Score:
    """One batch's figures; ``losses`` carries the graph when computed with gradients."""

    losses: Tensor  # (B,) mean loss of each example (over its scored tokens)
    loss_sum: float  # summed over every scored unit (tokens, or examples)
    loss_count: int
    hits: float  # metric numerator
    total: float  # metric denominator


def normalise_task(task: str) -> str:
    task = ALIASES.get(task, task)
    if task not in TASKS:
        raise SoraError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def infer_task(model: nn.Module, batch: dict[str, Tensor] | None = None) -> str:
    """The task a model and its batches imply (token classifiers: CTC if the batch has targets)."""
    arch = model.config.arch
    if arch == "encoder":
        return "features"
    if arch == "encoder_classifier":
        return "classification"
    if arch == "decoder_lm":
        return "lm"
    if arch == "seq2seq":
        return "seq2seq"
    if batch is not None and "targets" in batch:
        return "ctc"
    return "token_classification" if model.config.input == "text" else "ctc"


def check_batch(batch: dict, task: str, where: str = "batch") -> None:
    if not isinstance(batch, dict):
        raise SoraError(f"{where}: expected a dict of tensors, got {type(batch).__name__}")
    missing = [k for k in REQUIRED_KEYS[task] if k not in batch]
    if missing:
        raise SoraError(f"{where}: a {task} batch needs keys {', '.join(REQUIRED_KEYS[task])}; "
                        f"missing {', '.join(missing)} (has {', '.join(sorted(batch)) or 'none'})")


def run_model(model: nn.Module, batch: dict[str, Tensor], task: str) -> Tensor:
    """The model's logits for a batch: (B, C), (B, T, C) or (B, T, V)."""
    if task == "seq2seq":
        return model(batch["src"], batch["tgt_in"], batch.get("src_valid"), batch.get("tgt_valid"))
    if task == "lm":
        return model(batch["inputs"])
    return model(batch["inputs"], batch.get("valid"))


def score(model: nn.Module, batch: dict[str, Tensor], task: str, logits: Tensor | None = None) -> Score:
    """Loss per example (differentiable) plus summed loss and metric counts."""
    if task == "features":
        raise SoraError("a feature extractor (arch 'encoder') has no loss: gradient, ablation and pruning "
                        "analyses need a model with a task head")
    if logits is None:
        logits = run_model(model, batch, task)
    if task == "classification":
        losses = F.cross_entropy(logits.float(), batch["labels"], reduction="none")  # (B,)
        hits = (logits.argmax(-1) == batch["labels"]).sum().item()
        return Score(losses, losses.sum().item(), losses.numel(), hits, losses.numel())
    if task == "ctc":
        return _ctc_score(model, batch, logits)
    labels = batch["tgt_out"] if task == "seq2seq" else batch["labels"]  # (B, T), -100 ignored
    token_losses = F.cross_entropy(logits.float().transpose(1, 2), labels, reduction="none", ignore_index=-100)
    scored = labels != -100  # (B, T)
    per_example = scored.sum(1)
    losses = token_losses.sum(1) / per_example.clamp_min(1)  # (B,)
    hits = ((logits.argmax(-1) == labels) & scored).sum().item()
    count = int(scored.sum().item())
    return Score(losses, token_losses.sum().item(), count, hits, count)


def _ctc_score(model: nn.Module, batch: dict[str, Tensor], logits: Tensor) -> Score:
    out_valid = model.output_valid(batch["inputs"], batch.get("valid"))  # (B, T)
    lengths = out_valid.sum(1) if out_valid is not None else torch.full((logits.shape[0],), logits.shape[1])
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, C)
    targets, target_lengths = batch["targets"], batch["target_lengths"]
    raw = F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=0, reduction="none", zero_infinity=True)
    losses = raw / target_lengths.clamp_min(1)  # (B,) per target token, as reduction="mean" does
    hits = total = 0.0
    best = logits.argmax(-1)  # (B, T) greedy path
    for b in range(best.shape[0]):
        path = best[b, : int(lengths[b])].tolist()
        decoded = [t for i, t in enumerate(path) if t != 0 and (i == 0 or t != path[i - 1])]
        target = targets[b, : int(target_lengths[b])].tolist()
        hits += max(0, len(target) - edit_distance(decoded, target))
        total += len(target)
    return Score(losses, losses.sum().item(), losses.numel(), hits, total)


def edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[dict[str, Tensor]], task: str) -> dict[str, float]:
    """Mean loss (per scored unit) and the task metric over every batch."""
    loss_sum = hits = total = 0.0
    count = 0
    for batch in batches:
        s = score(model, batch, task)
        loss_sum, count, hits, total = loss_sum + s.loss_sum, count + s.loss_count, hits + s.hits, total + s.total
    return {"loss": loss_sum / max(count, 1), "metric": hits / total if total else float("nan")}
