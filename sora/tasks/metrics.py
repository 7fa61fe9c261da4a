"""Metrics from additive statistics.

Every metric here is computed from sums (a confusion matrix, summed losses, edit distances,
BLEU n-gram counts), so processes can evaluate their own shard and add their statistics up:
the result equals a single-process evaluation.
"""

from __future__ import annotations

import math

import torch
from sacrebleu.metrics import BLEU
from torch import Tensor


def classification_metrics(confusion: Tensor, labels: list[str] | None = None) -> dict[str, float]:
    """Accuracy, macro-F1 and each class's F1 from a (true, predicted) confusion matrix."""
    confusion = confusion.double()
    tp = confusion.diag()
    precision = tp / confusion.sum(0).clamp_min(1)
    recall = tp / confusion.sum(1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    present = (confusion.sum(0) + confusion.sum(1)) > 0  # classes absent from both sides do not count
    out = {
        "accuracy": float(tp.sum() / confusion.sum().clamp_min(1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    }
    names = labels or [str(i) for i in range(confusion.shape[0])]
    for name, value in zip(names, f1.tolist()):
        out[f"f1_{name}"] = value
    return out


def lm_metrics(nats: float, tokens: int, chars: int | None = None) -> dict[str, float]:
    """Loss (nats per token), perplexity, bits per token and, given the text length, bits per character."""
    loss = nats / max(tokens, 1)
    out = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "bits_per_token": loss / math.log(2)}
    if chars:
        out["bits_per_char"] = nats / chars / math.log(2)
    return out


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance between two sequences (characters, words or token ids)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def error_rate_stats(hypotheses: list[str], references: list[str]) -> Tensor:
    """(char edits, ref chars, word edits, ref words): sums for CER and WER."""
    stats = torch.zeros(4, dtype=torch.float64)
    for hyp, ref in zip(hypotheses, references):
        stats += torch.tensor(
            [edit_distance(list(hyp), list(ref)), len(ref), edit_distance(hyp.split(), ref.split()), len(ref.split())],
            dtype=torch.float64,
        )
    return stats


def error_rates(stats: Tensor) -> dict[str, float]:
    s = stats.tolist()
    return {"cer": s[0] / max(s[1], 1), "wer": s[2] / max(s[3], 1)}


def bleu_stats(hypotheses: list[str], references: list[str]) -> Tensor:
    """sacrebleu's corpus statistics (matches and totals per n-gram order, lengths), summed."""
    if not hypotheses:
        return torch.zeros(2 + 2 * BLEU().max_ngram_order, dtype=torch.float64)
    rows = BLEU()._extract_corpus_statistics(hypotheses, [references])  # one row per sentence
    return torch.tensor(rows, dtype=torch.float64).sum(0)


def bleu_from_stats(stats: Tensor) -> float:
    if stats.sum() == 0:
        return 0.0
    return float(BLEU()._compute_score_from_stats([int(v) for v in stats.tolist()]).score)
