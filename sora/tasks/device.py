"""Where a batch's tensors live and in which precision the forward pass runs.

Evaluation, training and analysis move batches and cast the same way, from this one place.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor


def autocast(device: torch.device, precision: str):
    """bf16/fp16 autocast for the forward pass; fp32 runs as is."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch with its tensors on ``device`` (other values as they are); host-to-GPU copies do not block."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v for k, v in batch.items()}
