"""Loss and metrics per task, in one place, so training, analysis and compression agree.

A task knows how to run a model on a batch (the batch contract of sora.data), its training
loss, and its validation statistics. Losses are *sums* over targets, and ``targets(batch)``
counts them: the trainer divides by the count of the whole optimizer step (every micro-batch,
every process), so gradient accumulation and data parallelism give the same update as one big
batch. Statistics are sums as well (sora.train.metrics), so sharded evaluation adds up exactly.

``evaluate(model, loader, task)`` is the entry point other stages reuse.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.errors import SoraError
from sora.train import metrics as M
from sora.train.device import autocast, to_device

IGNORE = -100


def unwrap(model: nn.Module) -> nn.Module:
    """The Sora model inside a DDP or torch.compile wrapper (for its methods and config)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


class Task:
    name = "task"
    monitor = "loss"  # the metric that picks the best model by default

    def forward(self, model: nn.Module, batch: dict) -> Tensor:
        raise NotImplementedError

    def targets(self, batch: dict) -> int:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict, label_smoothing: float = 0.0) -> Tensor:
        """Summed loss over the batch's targets (divide by ``targets``)."""
        raise NotImplementedError

    def stats(self, model: nn.Module, batch: dict, budget: int) -> dict[str, Tensor]:
        """Additive validation statistics; ``budget`` caps examples decoded (seq2seq)."""
        raise NotImplementedError

    def finish(self, stats: dict[str, Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def examples(self, batch: dict) -> int:
        key = "src" if "src" in batch else "inputs"
        return int(batch[key].shape[0])

    def tokens(self, batch: dict) -> int:
        """Input positions that are real (for tokens/s)."""
        for key in ("valid", "src_valid"):
            if key in batch:
                extra = int(batch["tgt_valid"].sum()) if key == "src_valid" and "tgt_valid" in batch else 0
                return int(batch[key].sum()) + extra
        x = batch.get("inputs")
        return int(x.numel()) if x is not None and x.dtype == torch.long else self.examples(batch)


class Classification(Task):
    name, monitor = "classification", "accuracy"

    def __init__(self, labels: list[str] | None = None, n_classes: int | None = None):
        self.labels = list(labels) if labels else None
        self.n_classes = len(self.labels) if self.labels else n_classes

    def forward(self, model, batch):
        return model(batch["inputs"], batch.get("valid"))  # (B, C)

    def targets(self, batch):
        return int(batch["labels"].shape[0])

    def loss(self, model, batch, label_smoothing=0.0):
        logits = self.forward(model, batch)
        return F.cross_entropy(logits.float(), batch["labels"], reduction="sum", label_smoothing=label_smoothing)

    def stats(self, model, batch, budget):
        logits = self.forward(model, batch).float()
        C = self.n_classes or logits.shape[-1]
        labels = batch["labels"]
        confusion = torch.bincount(labels * C + logits.argmax(-1), minlength=C * C).view(C, C)
        return {"nats": F.cross_entropy(logits, labels, reduction="sum").double().cpu(),
                "count": torch.tensor(float(labels.numel()), dtype=torch.float64),
                "confusion": confusion.double().cpu()}

    def finish(self, stats):
        out = {"loss": float(stats["nats"] / stats["count"].clamp_min(1))}
        out.update(M.classification_metrics(stats["confusion"], self.labels))
        return out


class LanguageModel(Task):
    """Next-token prediction; bits per character need the characters each token stands for."""

    name, monitor = "lm", "loss"

    def __init__(self, tokenizer=None):
        self.tokenizer = tokenizer
        self._char_lengths: Tensor | None = None

    def forward(self, model, batch):
        return model(batch["inputs"])  # (B, T, V)

    def targets(self, batch):
        return int((batch["labels"] != IGNORE).sum())

    def loss(self, model, batch, label_smoothing=0.0):
        logits = self.forward(model, batch)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE,
                               reduction="sum", label_smoothing=label_smoothing)

    def stats(self, model, batch, budget):
        logits = self.forward(model, batch)
        labels = batch["labels"]
        nats = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="sum")
        real = labels[labels != IGNORE]
        out = {"nats": nats.double().cpu(), "count": torch.tensor(float(real.numel()), dtype=torch.float64)}
        lengths = self.char_lengths(logits.shape[-1])
        if lengths is not None:
            out["chars"] = lengths[real.cpu().clamp(max=lengths.numel() - 1)].sum().double()
        return out

    def finish(self, stats):
        chars = int(stats["chars"]) if "chars" in stats else None
        return M.lm_metrics(float(stats["nats"]), int(stats["count"]), chars)

    def char_lengths(self, vocab_size: int) -> Tensor | None:
        """Characters each token id decodes to (special tokens: 0)."""
        if self.tokenizer is None:
            return None
        if self._char_lengths is None:
            self._char_lengths = torch.tensor(
                [len(self.tokenizer.decode([i])) for i in range(vocab_size)], dtype=torch.float64)
        return self._char_lengths


class Seq2SeqTask(Task):
    """Teacher-forced loss, and BLEU (sacrebleu) of greedy decodes of the first validation examples."""

    name = "seq2seq"

    def __init__(self, tokenizer=None, max_new_tokens: int = 96, decode: bool = True):
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.monitor = "bleu" if decode else "loss"

    def forward(self, model, batch):
        return model(batch["src"], batch["tgt_in"], batch.get("src_valid"), batch.get("tgt_valid"))  # (B, T, V)

    def targets(self, batch):
        return int((batch["tgt_out"] != IGNORE).sum())

    def loss(self, model, batch, label_smoothing=0.0):
        logits = self.forward(model, batch)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["tgt_out"].flatten(), ignore_index=IGNORE,
                               reduction="sum", label_smoothing=label_smoothing)

    def stats(self, model, batch, budget):
        logits = self.forward(model, batch)
        tgt = batch["tgt_out"]
        out = {"nats": F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=IGNORE,
                                       reduction="sum").double().cpu(),
               "count": torch.tensor(float((tgt != IGNORE).sum()), dtype=torch.float64)}
        n = max(0, min(budget, tgt.shape[0])) if self.monitor == "bleu" else 0
        if self.monitor == "bleu":  # the same keys on every process, so sums line up
            out["bleu"] = M.bleu_stats([], [])
            out["decoded"] = torch.tensor(0.0, dtype=torch.float64)
        if n > 0:
            src_valid = batch.get("src_valid")
            longest = min(self.max_new_tokens, unwrap(model).config.max_len - 1)  # positions the decoder has
            hyps = unwrap(model).generate(batch["src"][:n], longest,
                                  src_valid=src_valid[:n] if src_valid is not None else None)
            eos = unwrap(model).config.eos_id
            refs = [[t for t in row.tolist() if t != IGNORE and t != eos] for row in tgt[:n]]
            out["bleu"] = M.bleu_stats([self.text(h) for h in hyps], [self.text(r) for r in refs])
            out["decoded"] = torch.tensor(float(n), dtype=torch.float64)
        return out

    def finish(self, stats):
        out = {"loss": float(stats["nats"] / stats["count"].clamp_min(1))}
        out["perplexity"] = M.lm_metrics(float(stats["nats"]), int(stats["count"]))["perplexity"]
        if "bleu" in stats:
            out["bleu"] = M.bleu_from_stats(stats["bleu"])
        return out

    def text(self, ids: list[int]) -> str:
        if self.tokenizer is not None:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
        return " ".join(map(str, ids))


class CTC(Task):
    """Connectionist temporal classification over per-patch logits; class 0 is the blank."""

    name, monitor = "ctc", "cer"

    def __init__(self, labels: list[str] | None = None):
        self.labels = list(labels) if labels else None

    def forward(self, model, batch):
        return model(batch["inputs"], batch.get("valid"))  # (B, T', C)

    def targets(self, batch):
        return int(batch["target_lengths"].sum())

    def _log_probs(self, model, batch) -> tuple[Tensor, Tensor]:
        logits = self.forward(model, batch).float()  # (B, T', C)
        valid = unwrap(model).output_valid(batch["inputs"], batch.get("valid"))
        lengths = valid.sum(1) if valid is not None else torch.full((logits.shape[0],), logits.shape[1])
        return logits.log_softmax(-1), lengths.to(logits.device)

    def loss(self, model, batch, label_smoothing=0.0):
        log_probs, lengths = self._log_probs(model, batch)
        return F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], lengths, batch["target_lengths"],
                          blank=0, reduction="sum", zero_infinity=True)

    def stats(self, model, batch, budget):
        log_probs, lengths = self._log_probs(model, batch)
        nats = F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], lengths, batch["target_lengths"],
                          blank=0, reduction="sum", zero_infinity=True)
        hyps = greedy_ctc(log_probs, lengths)
        refs = [row[:n].tolist() for row, n in zip(batch["targets"], batch["target_lengths"].tolist())]
        return {"nats": nats.double().cpu(), "count": torch.tensor(float(batch["target_lengths"].sum()), dtype=torch.float64),
                "errors": M.error_rate_stats([self.text(h) for h in hyps], [self.text(r) for r in refs])}

    def finish(self, stats):
        out = {"loss": float(stats["nats"] / stats["count"].clamp_min(1))}
        out.update(M.error_rates(stats["errors"]))
        return out

    def text(self, ids: list[int]) -> str:
        if not self.labels:
            return " ".join(map(str, ids))
        sep = "" if all(len(label) <= 1 for label in self.labels[1:]) else " "
        return sep.join(self.labels[i] for i in ids if 0 < i < len(self.labels))


def greedy_ctc(log_probs: Tensor, lengths: Tensor) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks (0)."""
    best = log_probs.argmax(-1).cpu()  # (B, T')
    out = []
    for row, n in zip(best, lengths.tolist()):
        ids = torch.unique_consecutive(row[: int(n)]).tolist()
        out.append([i for i in ids if i != 0])
    return out


def make_task(kind: str, *, labels: list[str] | None = None, tokenizer=None, n_classes: int | None = None,
              decode: bool = True, max_new_tokens: int = 96) -> Task:
    if kind == "classification":
        return Classification(labels, n_classes)
    if kind == "lm":
        return LanguageModel(tokenizer)
    if kind == "seq2seq":
        return Seq2SeqTask(tokenizer, max_new_tokens, decode)
    if kind == "ctc":
        return CTC(labels)
    raise SoraError(f"unknown task {kind!r}; expected classification, lm, seq2seq or ctc")


def task_for(data, model: nn.Module | None = None, *, decode_examples: int = 200, max_new_tokens: int = 96) -> Task:
    """The task of a prepared dataset (sora.data), with its labels and tokenizer."""
    n_classes = getattr(getattr(model, "config", None), "n_classes", None)
    return make_task(data.task, labels=getattr(data, "labels", None), tokenizer=getattr(data, "tokenizer", None),
                     n_classes=n_classes, decode=decode_examples > 0, max_new_tokens=max_new_tokens)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[dict],
    task: Task | str,
    *,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    max_batches: int | None = None,
    decode_examples: int = 200,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, float]:
    """Run ``model`` over ``loader`` and return the task's metrics (loss, accuracy, bleu, ...).

    ``reduce`` sums a statistic over processes (sora.train.distributed) when each process
    evaluates its own shard; ``decode_examples`` caps the examples decoded for BLEU on this process.
    """
    task = make_task(task) if isinstance(task, str) else task
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals: dict[str, Tensor] = {}
    budget = decode_examples
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            batch = to_device(batch, device)
            with autocast(device, precision):
                stats = task.stats(model, batch, budget)
            budget -= int(stats.get("decoded", torch.tensor(0.0)))
            for key, value in stats.items():
                value = value.detach().double().cpu()
                totals[key] = totals[key] + value if key in totals else value
    finally:
        model.train(was_training)
    if reduce is not None:
        totals = {k: reduce(v) for k, v in sorted(totals.items())}
    if not totals:
        raise SoraError("evaluation saw no batches (is the split empty?)")
    return task.finish(totals)
