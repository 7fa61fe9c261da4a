"""The machine a run trains on, in a few words, so a results table can say where its figures were measured."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def describe_machine() -> dict[str, object]:
    """CPU model, logical cores, torch version and accelerator: what decides a run's speed."""
    machine: dict[str, object] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


def _cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux (platform.processor() there says only x86_64)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
