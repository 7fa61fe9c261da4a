"""The tasks, one class each, and their batches (the data layer's contract, sora.data.datasets):

- ``classification``: inputs, valid, labels (B,) -> accuracy, macro-F1, F1 per class
- ``token_classification``: inputs, valid, labels (B, T), -100 where ignored -> token accuracy (analysis only)
- ``lm``: inputs, labels (B, T) next-token ids, -100 where ignored -> loss, perplexity, bits per token/char
- ``seq2seq``: src, src_valid, tgt_in, tgt_out (-100 at padding), tgt_valid -> loss, perplexity, BLEU of greedy decodes
- ``ctc``: inputs, valid, targets (B, L) padded with 0 (the blank), target_lengths -> loss, CER, WER
- ``features``: inputs, valid; a feature extractor (arch ``encoder``) has no loss, so only the
  measurements that need none (attention statistics, activations, positions) apply

``score``'s [0, 1] metric: accuracy, token accuracy (teacher-forced for seq2seq), 1 - token error rate (ctc).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.errors import SoraError
from sora.tasks import metrics as M
from sora.tasks.base import IGNORE, Score, Task, summed_token_loss, token_score, unwrap


class Classification(Task):
    name, monitor, metric = "classification", "accuracy", "accuracy"
    required = ("inputs", "labels")

    def __init__(self, labels: list[str] | None = None, n_classes: int | None = None):
        self.labels = list(labels) if labels else None
        self.n_classes = len(self.labels) if self.labels else n_classes

    def targets(self, batch):
        return int(batch["labels"].shape[0])

    def loss(self, model, batch, label_smoothing=0.0):
        logits = self.forward(model, batch)  # (B, C)
        return F.cross_entropy(logits.float(), batch["labels"], reduction="sum", label_smoothing=label_smoothing)

    def stats(self, model, batch, budget):
        logits = self.forward(model, batch).float()
        C = self.n_classes or logits.shape[-1]
        labels = batch["labels"]
        confusion = torch.bincount(labels * C + logits.argmax(-1), minlength=C * C).view(C, C)
        return {
            "nats": F.cross_entropy(logits, labels, reduction="sum").double().cpu(),
            "count": torch.tensor(float(labels.numel()), dtype=torch.float64),
            "confusion": confusion.double().cpu(),
        }

    def finish(self, stats):
        out = {"loss": float(stats["nats"] / stats["count"].clamp_min(1))}
        out.update(M.classification_metrics(stats["confusion"], self.labels))
        return out

    def score(self, model, batch, logits=None):
        logits = self.forward(model, batch) if logits is None else logits
        losses = F.cross_entropy(logits.float(), batch["labels"], reduction="none")  # (B,)
        hits = (logits.argmax(-1) == batch["labels"]).sum().item()
        return Score(losses, losses.sum().item(), losses.numel(), hits, losses.numel())


class TokenClassification(Task):
    """A class per token (a text token classifier): analysed, not trained, by Sora."""

    name, metric = "token_classification", "accuracy"
    required = ("inputs", "labels")

    def __init__(self, labels: list[str] | None = None):
        self.labels = list(labels) if labels else None

    def score(self, model, batch, logits=None):
        return token_score(self.forward(model, batch) if logits is None else logits, batch["labels"])


class LanguageModel(Task):
    """Next-token prediction; bits per character need the characters each token stands for."""

    name, monitor, metric = "lm", "loss", "token_accuracy"
    required = ("inputs", "labels")

    def __init__(self, tokenizer=None):
        self.tokenizer = tokenizer
        self._char_lengths: Tensor | None = None

    def forward(self, model, batch):
        return model(batch["inputs"])  # (B, T, V)

    def targets(self, batch):
        return int((batch["labels"] != IGNORE).sum())

    def loss(self, model, batch, label_smoothing=0.0):
        return summed_token_loss(self.forward(model, batch), batch["labels"], label_smoothing)

    def stats(self, model, batch, budget):
        logits = self.forward(model, batch)
        labels = batch["labels"]
        nats = summed_token_loss(logits, labels)
        real = labels[labels != IGNORE]
        out = {"nats": nats.double().cpu(), "count": torch.tensor(float(real.numel()), dtype=torch.float64)}
        lengths = self.char_lengths(logits.shape[-1])
        if lengths is not None:
            out["chars"] = lengths[real.cpu().clamp(max=lengths.numel() - 1)].sum().double()
        return out

    def finish(self, stats):
        chars = int(stats["chars"]) if "chars" in stats else None
        return M.lm_metrics(float(stats["nats"]), int(stats["count"]), chars)

    def score(self, model, batch, logits=None):
        return token_score(self.forward(model, batch) if logits is None else logits, batch["labels"])

    def char_lengths(self, vocab_size: int) -> Tensor | None:
        """Characters each token id decodes to (special tokens: 0)."""
        if self.tokenizer is None:
            return None
        if self._char_lengths is None:
            self._char_lengths = torch.tensor(
                [len(self.tokenizer.decode([i])) for i in range(vocab_size)], dtype=torch.float64
            )
        return self._char_lengths


class Seq2SeqTask(Task):
    """Teacher-forced loss, and BLEU (sacrebleu) of decodes of the first validation examples (greedy; the test
    split's decodes may use beam search: ``train.test_beam``)."""

    name, metric = "seq2seq", "token_accuracy"
    required = ("src", "tgt_in", "tgt_out")

    def __init__(self, tokenizer=None, max_new_tokens: int = 96, decode: bool = True, beam: int = 1):
        self.tokenizer = tokenizer
        self.max_new_tokens, self.beam = max_new_tokens, beam
        self.monitor = "bleu" if decode else "loss"

    def forward(self, model, batch):
        return model(batch["src"], batch["tgt_in"], batch.get("src_valid"), batch.get("tgt_valid"))  # (B, T, V)

    def targets(self, batch):
        return int((batch["tgt_out"] != IGNORE).sum())

    def loss(self, model, batch, label_smoothing=0.0):
        return summed_token_loss(self.forward(model, batch), batch["tgt_out"], label_smoothing)

    def stats(self, model, batch, budget):
        logits = self.forward(model, batch)
        tgt = batch["tgt_out"]
        out = {
            "nats": summed_token_loss(logits, tgt).double().cpu(),
            "count": torch.tensor(float((tgt != IGNORE).sum()), dtype=torch.float64),
        }
        n = max(0, min(budget, tgt.shape[0])) if self.monitor == "bleu" else 0
        if self.monitor == "bleu":  # the same keys on every process, so sums line up
            out["bleu"] = M.bleu_stats([], [])
            out["decoded"] = torch.tensor(0.0, dtype=torch.float64)
        if n > 0:
            hyps, refs = self.decode(model, batch, n)
            out["bleu"] = M.bleu_stats([self.text(h) for h in hyps], [self.text(r) for r in refs])
            out["decoded"] = torch.tensor(float(n), dtype=torch.float64)
        return out

    def finish(self, stats):
        out = {"loss": float(stats["nats"] / stats["count"].clamp_min(1))}
        out["perplexity"] = M.lm_metrics(float(stats["nats"]), int(stats["count"]))["perplexity"]
        if "bleu" in stats:
            out["bleu"] = M.bleu_from_stats(stats["bleu"])
        return out

    def score(self, model, batch, logits=None):
        return token_score(self.forward(model, batch) if logits is None else logits, batch["tgt_out"])

    def decode(self, model: nn.Module, batch: dict, n: int) -> tuple[list[list[int]], list[list[int]]]:
        """Decodes (greedy, or beam search with ``beam`` > 1) of the batch's first ``n`` sources, and their
        references (ids, no end token)."""
        src_valid = batch.get("src_valid")
        inner = unwrap(model)
        longest = min(self.max_new_tokens, inner.config.max_len - 1)  # positions the decoder has
        valid = src_valid[:n] if src_valid is not None else None
        hyps = inner.generate(batch["src"][:n], longest, src_valid=valid, beam=self.beam)
        eos = inner.config.eos_id
        refs = [[t for t in row.tolist() if t != IGNORE and t != eos] for row in batch["tgt_out"][:n]]
        return hyps, refs

    def text(self, ids: list[int]) -> str:
        if self.tokenizer is not None:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
        return " ".join(map(str, ids))


class CTC(Task):
    """Connectionist temporal classification over per-patch logits; class 0 is the blank."""

    name, monitor, metric = "ctc", "cer", "1-ter"
    required = ("inputs", "valid", "targets", "target_lengths")

    def __init__(self, labels: list[str] | None = None):
        self.labels = list(labels) if labels else None

    def targets(self, batch):
        return int(batch["target_lengths"].sum())

    def loss(self, model, batch, label_smoothing=0.0):
        log_probs, lengths = self._log_probs(model, batch, self.forward(model, batch))
        return self._ctc_loss(log_probs, lengths, batch, "sum")

    def stats(self, model, batch, budget):
        log_probs, lengths = self._log_probs(model, batch, self.forward(model, batch))
        nats = self._ctc_loss(log_probs, lengths, batch, "sum")
        hyps = greedy_ctc(log_probs, lengths)
        refs = self._references(batch)
        count = torch.tensor(float(batch["target_lengths"].sum()), dtype=torch.float64)
        return {
            "nats": nats.double().cpu(),
            "count": count,
            "errors": M.error_rate_stats([self.text(h) for h in hyps], [self.text(r) for r in refs]),
        }

    def finish(self, stats):
        out = {"loss": float(stats["nats"] / stats["count"].clamp_min(1))}
        out.update(M.error_rates(stats["errors"]))
        return out

    def score(self, model, batch, logits=None):
        """Loss per target token (as reduction="mean" does), and 1 - token error rate of the best path."""
        logits = self.forward(model, batch) if logits is None else logits
        log_probs, lengths = self._log_probs(model, batch, logits)
        losses = self._ctc_loss(log_probs, lengths, batch, "none") / batch["target_lengths"].clamp_min(1)  # (B,)
        hits = total = 0.0
        for decoded, target in zip(greedy_ctc(logits, lengths), self._references(batch)):
            hits += max(0, len(target) - M.edit_distance(decoded, target))
            total += len(target)
        return Score(losses, losses.sum().item(), losses.numel(), hits, total)

    def text(self, ids: list[int]) -> str:
        if not self.labels:
            return " ".join(map(str, ids))
        sep = "" if all(len(label) <= 1 for label in self.labels[1:]) else " "
        return sep.join(self.labels[i] for i in ids if 0 < i < len(self.labels))

    @staticmethod
    def _log_probs(model: nn.Module, batch: dict, logits: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T', C) log-probabilities and each example's number of real frames."""
        logits = logits.float()
        valid = unwrap(model).output_valid(batch["inputs"], batch.get("valid"))
        lengths = valid.sum(1) if valid is not None else torch.full((logits.shape[0],), logits.shape[1])
        return logits.log_softmax(-1), lengths.to(logits.device)

    @staticmethod
    def _ctc_loss(log_probs: Tensor, lengths: Tensor, batch: dict, reduction: str) -> Tensor:
        return F.ctc_loss(
            log_probs.transpose(0, 1),
            batch["targets"],
            lengths,
            batch["target_lengths"],
            blank=0,
            reduction=reduction,
            zero_infinity=True,
        )

    @staticmethod
    def _references(batch: dict) -> list[list[int]]:
        return [row[:n].tolist() for row, n in zip(batch["targets"], batch["target_lengths"].tolist())]


class Features(Task):
    """A feature extractor (arch ``encoder``): no head, so no loss; only loss-free measurements apply."""

    name = "features"
    required = ("inputs",)

    def score(self, model, batch, logits=None):
        raise SoraError(
            "a feature extractor (arch 'encoder') has no loss: gradient, ablation and pruning "
            "analyses need a model with a task head"
        )


def greedy_ctc(scores: Tensor, lengths: Tensor) -> list[list[int]]:
    """Best path over (B, T', C) per-frame scores (logits or log-probabilities): argmax per frame, merge
    repeats, drop blanks (0)."""
    best = scores.argmax(-1).cpu()  # (B, T')
    out = []
    for row, n in zip(best, lengths.tolist()):
        ids = torch.unique_consecutive(row[: int(n)]).tolist()
        out.append([i for i in ids if i != 0])
    return out
