"""An exponential moving average of the weights (Polyak averaging): what validation measures and `best` keeps.

On a small dataset the weights of consecutive steps scatter around a good solution; their average generalises
better than any one of them, at no extra cost in steps. The average lives in the optimizer's per-parameter state
(``state[p]["average"]``), so checkpoints save it and a resumed run continues it exactly, with no new file.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

KEY = "average"


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


@torch.no_grad()
def update_average(optimizer: torch.optim.Optimizer, decay: float, step: int) -> None:
    """Fold the weights after optimizer step ``step`` (1-based) into the average. The effective decay starts low
    (``(1 + step) / (10 + step)``) so the first steps' random weights do not linger in it."""
    rate = min(decay, (1 + step) / (10 + step))
    for p in _params(optimizer):
        state = optimizer.state[p]
        if KEY not in state:
            state[KEY] = p.detach().clone()
        else:
            state[KEY].lerp_(p.detach(), 1.0 - rate)


@contextmanager
def averaged_weights(optimizer: torch.optim.Optimizer, enabled: bool = True) -> Iterator[None]:
    """The model's parameters hold the average for the duration (validation, saving), the trained ones after."""
    params = [p for p in _params(optimizer) if KEY in optimizer.state[p]] if enabled else []
    with torch.no_grad():
        trained = [p.detach().clone() for p in params]
        for p in params:
            p.copy_(optimizer.state[p][KEY])
    try:
        yield
    finally:
        with torch.no_grad():
            for p, t in zip(params, trained):
                p.copy_(t)


@torch.no_grad()
def keep_average(optimizer: torch.optim.Optimizer) -> None:
    """Copy the average into the parameters for good (the end of a run)."""
    for p in _params(optimizer):
        if KEY in optimizer.state[p]:
            p.copy_(optimizer.state[p][KEY])
