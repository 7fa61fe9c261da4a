"""Optimizers and learning-rate schedules.

Weight decay pulls weights towards zero, which is right for the matrices of attention and
feed-forward particles but wrong for norm gains (their neutral value is 1), biases and
embeddings (rare tokens would decay away between the steps that see them); those go in a
parameter group without decay.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sora.particles import LearnedPosition, TokenEmbedding
from sora.train.config import TrainConfig

NO_DECAY_MODULES = (nn.LayerNorm, nn.RMSNorm, nn.Embedding, TokenEmbedding, LearnedPosition)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices with decay, and norms / biases / embeddings without."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, NO_DECAY_MODULES):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, keep = [], []
    for _, p in model.named_parameters():  # tied weights appear once, under their first name
        if not p.requires_grad:
            continue
        (keep if p.ndim < 2 or id(p) in no_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def lr_factor(step: int, total: int | None, config: TrainConfig, progress: float | None = None) -> float:
    """Multiplier of the peak lr before optimizer step ``step`` (0-based).

    ``total`` optimizer steps; ``progress`` (elapsed / time budget) when there is a time budget: the
    decay then follows whichever end comes first, so a run cut short by the clock still anneals
    (at the price of bit-exact reproducibility, since the clock differs between runs).
    """
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    frac = 0.0
    if total is not None:
        frac = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    if progress is not None:
        frac = max(frac, progress)
    frac = min(1.0, frac)
    floor = config.min_lr_ratio
    if config.schedule == "linear":
        return floor + (1 - floor) * (1 - frac)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
