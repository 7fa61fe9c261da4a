"""Which device training runs on, and which precision it may use there (batches move with sora.tasks.device)."""

from __future__ import annotations

import torch

from sora.errors import ConfigError


def pick_device(choice: str = "auto", local_rank: int = 0) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' asked for, but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision: fp16 needs a CUDA device (with a gradient scaler); use bf16 on CPU")
