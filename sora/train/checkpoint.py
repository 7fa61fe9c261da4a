"""Checkpoints that resume a run exactly, written atomically, without pickle.

``OUT/checkpoints/step-N/`` is a complete model folder (``sora eval`` reads it as is) plus:

- ``optimizer.safetensors`` / ``optimizer.json``: the optimizer's tensors (moments, step counts)
  keyed ``state.<param name>.<field>``, and its parameter groups and hyperparameters;
- ``rng.safetensors`` / ``rng.json``: every process's torch (and CUDA) generator state, and
  Python's and NumPy's;
- ``trainer.json``: step, data position (epoch, batch), elapsed time, best metric, early-stopping
  count, validation history, gradient-scaler state.

Everything is written into a hidden sibling folder that is renamed into place, so a crash
leaves either the previous checkpoint or the new one, never half of one. Loading reads JSON
and safetensors only.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sora.errors import SoraError
from sora.models import save_model

STEP_DIR = re.compile(r"^step-(\d+)$")
OPTIMIZER, RNG, TRAINER = "optimizer", "rng", "trainer.json"


# -- optimizer state <-> tensors + JSON ------------------------------------------------------------

def flatten_optimizer(state: dict) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A name-keyed optimizer state dict (torch.distributed.checkpoint.state_dict) as tensors + JSON."""
    tensors, scalars = {}, {}
    for name, fields in state["state"].items():
        for field, value in fields.items():
            key = f"state.{name}.{field}"
            if isinstance(value, Tensor):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, Tensor], info: dict[str, Any]) -> dict:
    state: dict[str, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(info.get("scalars", {}).items()):
        name, field = key[len("state."):].rsplit(".", 1)
        state.setdefault(name, {})[field] = value
    groups = []
    for g in info["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


# -- random number generators -------------------------------------------------------------------------

def local_rng_tensors() -> dict[str, Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def host_rng_json() -> dict[str, Any]:
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(words), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def restore_rng(tensors: dict[str, Tensor], info: dict[str, Any], rank: int) -> None:
    key = f"torch_cpu.rank{rank}"
    if key not in tensors:
        raise SoraError(f"checkpoint has no random state for process {rank}; resume with the same number of processes")
    torch.set_rng_state(tensors[key])
    if f"cuda.rank{rank}" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[f"cuda.rank{rank}"])
    version, words, gauss = info["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# -- folders ---------------------------------------------------------------------------------------

def save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    *,
    optimizer: tuple[dict[str, Tensor], dict[str, Any]],
    rng: tuple[dict[str, Tensor], dict[str, Any]],
    trainer: dict[str, Any],
    tokenizer=None,
    meta: dict[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write ``root/step-N`` atomically, then delete all but the newest ``keep_last``."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        folder = save_model(model, staging / "ckpt", tokenizer=tokenizer, meta=meta)
        save_file(optimizer[0], str(folder / f"{OPTIMIZER}.safetensors"))
        (folder / f"{OPTIMIZER}.json").write_text(json.dumps(optimizer[1]) + "\n")
        save_file(rng[0], str(folder / f"{RNG}.safetensors"))
        (folder / f"{RNG}.json").write_text(json.dumps(rng[1]) + "\n")
        (folder / TRAINER).write_text(json.dumps(trainer, indent=1) + "\n")
        target = root / f"step-{step}"
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and (p / TRAINER).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """Optimizer tensors + JSON, RNG tensors + JSON and trainer state of ``folder``."""
    try:
        return {
            "optimizer": (load_file(str(folder / f"{OPTIMIZER}.safetensors")),
                          json.loads((folder / f"{OPTIMIZER}.json").read_text())),
            "rng": (load_file(str(folder / f"{RNG}.safetensors")), json.loads((folder / f"{RNG}.json").read_text())),
            "trainer": json.loads((folder / TRAINER).read_text()),
        }
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise SoraError(f"{folder}: damaged checkpoint ({e})") from None
