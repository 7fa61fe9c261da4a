"""Masked-language-model pretraining of a text encoder on the training split's own texts (``train.pretrain``).

The body (token embedding, position, blocks: ``run_stack``) learns to restore masked tokens through a head that
shares the token embedding's weights (BERT's tied decoder, after a dense + GELU + norm transform). The head is
dropped afterwards and task training starts from the body; no text beyond the training split is read, so the
test split stays unseen. Masking follows BERT: of the real, non-special tokens chosen (``mask``, 15%), 80% become
``[UNK]`` (Sora's tokenizers have no ``[MASK]``, and ``[UNK]`` is a symbol the body never needs otherwise on
texts its own tokenizer was trained on), 10% a random token and 10% stay as they are.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.data.tokenizer import SPECIALS, UNK, special_id
from sora.errors import ConfigError
from sora.train.config import PretrainConfig
from sora.train.optim import param_groups, set_lr


class MaskedLMHead(nn.Module):
    """Hidden states of masked positions to vocabulary logits, decoding with the token embedding's matrix."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor, embedding: Tensor) -> Tensor:  # (N, d), (V, d) -> (N, V)
        return F.linear(self.transform(h), embedding, self.bias)


def mask_tokens(
    inputs: Tensor, valid: Tensor, special: Tensor, unk_id: int, vocab_size: int, rate: float, generator
) -> tuple[Tensor, Tensor]:
    """BERT's corruption of a batch: (corrupted ids (B, T), chosen positions (B, T) bool). Random replacements
    are drawn from the ordinary tokens (the specials come first in Sora's vocabularies)."""
    chosen = valid & ~torch.isin(inputs, special) & (torch.rand(inputs.shape, generator=generator) < rate)
    roll = torch.rand(inputs.shape, generator=generator)
    corrupted = inputs.masked_fill(chosen & (roll < 0.8), unk_id)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    randoms = torch.randint(len(SPECIALS), vocab_size, inputs.shape, generator=generator)
    return torch.where(swap, randoms, corrupted), chosen


def pretrain_masked_lm(
    model: nn.Module, data, cfg: PretrainConfig, *, batch_size: int, seed: int, log: Callable[[str], None]
) -> dict:
    """Train ``model``'s body to restore masked training texts for ``cfg.epochs``; its figures for metrics.json."""
    embedding = token_embedding(model)
    tokenizer = data.tokenizer
    special = torch.tensor([i for i in (special_id(tokenizer, s) for s in SPECIALS) if i is not None])
    unk_id = special_id(tokenizer, UNK)
    head = MaskedLMHead(embedding.shape[1], embedding.shape[0])
    params = param_groups(model, cfg.weight_decay) + param_groups(head, cfg.weight_decay)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    batch_size = cfg.batch_size or batch_size
    per_epoch = data.num_batches("train", batch_size)
    total = max(1, math.ceil(cfg.epochs * per_epoch))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    head.train()
    step, began, window = 0, time.perf_counter(), _Window()
    for epoch in range(math.ceil(cfg.epochs)):
        for batch in data.loader("train", batch_size, shuffle=True, seed=seed, epoch=epoch, drop_last=True):
            if step == total:
                break
            inputs, valid = batch["inputs"], batch["valid"]
            corrupted, chosen = mask_tokens(inputs, valid, special, unk_id, embedding.shape[0], cfg.mask, generator)
            if not chosen.any():
                continue
            h, _ = model.run_stack(corrupted, valid)  # (B, T, d)
            logits = head(h[chosen], embedding)  # (N, V)
            loss = F.cross_entropy(logits, inputs[chosen])
            set_lr(optimizer, cfg.lr * _schedule(step, total, cfg.warmup_steps))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            window.add(loss.item(), (logits.argmax(-1) == inputs[chosen]).float().mean().item())
            step += 1
            if step % 100 == 0 or step == total:
                log(f"pretrain step {step}/{total}: masked-token loss {window.loss:.3f} accuracy {window.accuracy:.3f}")
    model.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - began
    return {"steps": step, "loss": window.loss, "masked_accuracy": window.accuracy, "seconds": round(seconds, 1)}


def token_embedding(model: nn.Module) -> nn.Parameter:
    """The token embedding matrix (V, d) of a text encoder; anything else cannot be pretrained on texts."""
    tokens = getattr(getattr(model, "embed", None), "tokens", None)
    if tokens is None or not hasattr(model, "run_stack"):
        raise ConfigError(
            "train.pretrain: pretraining on the training texts needs a text encoder (an encoder_classifier or "
            "token_classifier with input: text)"
        )
    return tokens.weight


def training_sequences(data) -> list:
    """The token ids of every training text (what the word vectors count)."""
    train = data.splits.get("train")
    ids = getattr(train, "ids", None)
    if ids is None:
        raise ConfigError("train.pretrain: the training split holds no token ids to count")
    return list(ids)


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class _Window:
    """Mean loss and masked-token accuracy of the last 100 steps (what the log line says)."""

    def __init__(self, size: int = 100):
        self.size, self.items = size, []

    def add(self, loss: float, accuracy: float) -> None:
        self.items = (self.items + [(loss, accuracy)])[-self.size :]

    @property
    def loss(self) -> float:
        return sum(x for x, _ in self.items) / max(1, len(self.items))

    @property
    def accuracy(self) -> float:
        return sum(a for _, a in self.items) / max(1, len(self.items))
