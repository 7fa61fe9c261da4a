"""Checkpoints that resume a run exactly, written atomically, without pickle.

``OUT/checkpoints/step-N/`` is a complete model folder (``sora eval`` reads it as is) plus:

- ``optimizer.safetensors`` / ``optimizer.json``: the optimizer's tensors (moments, step counts)
  keyed ``state.<param name>.<field>``, and its parameter groups and hyperparameters;
- ``rng.safetensors`` / ``rng.json``: every process's torch (and CUDA) generator state, and
  Python's and NumPy's;
- ``trainer.json``: the run id (``OUT/run.json``), step, data position (epoch, batch), elapsed time,
  best metric, early-stopping count, the stop decision, validation history, gradient-scaler state.

Everything is written into a hidden sibling folder that is renamed into place, so a crash
leaves either the previous checkpoint or the new one, never half of one. Rotation deletes only the
current run's older checkpoints. Loading reads JSON and safetensors only, and a damaged or missing
file is an error naming it.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import load_model as load_weights_into
from torch import Tensor, nn

from sora.atomic import clean_stale, staged_dir
from sora.errors import SoraError
from sora.models.folder import write_model_files
from sora.train.killpoints import kill_point
from sora.train.state import TrainState

STEP_DIR = re.compile(r"^step-(\d+)$")
OPTIMIZER, RNG, TRAINER = "optimizer", "rng", "trainer.json"
STATE_VERSION = 1  # trainer.json's "version"
DISCARDED = ".old-"  # an old checkpoint is renamed to .old-step-N before it is deleted


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
        name, field = key[len("state.") :].rsplit(".", 1)
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
    return {
        "python": [version, list(words), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def restore_rng(tensors: dict[str, Tensor], info: dict[str, Any], rank: int) -> None:
    key = f"torch_cpu.rank{rank}"
    if key not in tensors:
        raise SoraError(f"checkpoint has no random state for process {rank}; resume with the same number of processes")
    torch.set_rng_state(tensors[key])
    if f"cuda.rank{rank}" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[f"cuda.rank{rank}"])
    random.setstate(_python_state(info))
    np.random.set_state(_numpy_state(info))


def check_rng(tensors: dict[str, Tensor], info: Any, path: Path) -> None:
    """Raise naming ``path`` unless every saved state loads into a fresh generator (the global ones untouched)."""
    try:
        random.Random().setstate(_python_state(info))
        np.random.RandomState().set_state(_numpy_state(info))
        for key, tensor in tensors.items():
            if key.startswith("torch_cpu."):
                torch.Generator().set_state(tensor)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise SoraError(f"{path}: damaged random state ({one_line(e)})") from None


def _python_state(info: dict[str, Any]) -> tuple:
    version, words, gauss = info["python"]
    return version, tuple(words), gauss


def _numpy_state(info: dict[str, Any]) -> tuple:
    kind, keys, pos, has_gauss, cached = info["numpy"]
    return kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached


# -- folders ---------------------------------------------------------------------------------------


def save_checkpoint(
    root: Path,
    model: nn.Module,
    state: TrainState,
    *,
    run_id: str,
    world_size: int,
    train_config: dict[str, Any],
    optimizer: tuple[dict[str, Tensor], dict[str, Any]],
    rng: tuple[dict[str, Tensor], dict[str, Any]],
    tokenizer=None,
    meta: dict[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write ``root/step-N`` (N: ``state.step``) atomically, then delete all but the newest ``keep_last``
    of run ``run_id``."""
    target = root / f"step-{state.step}"
    trainer = {
        **state.to_json(),
        "version": STATE_VERSION,
        "run_id": run_id,
        "world_size": world_size,
        "train_config": train_config,
    }
    clean_stale(root)  # what saves of earlier steps, killed mid-write, left
    with staged_dir(target) as folder:
        write_model_files(model, folder, tokenizer=tokenizer, meta=meta)
        save_file(optimizer[0], str(folder / f"{OPTIMIZER}.safetensors"))
        (folder / f"{OPTIMIZER}.json").write_text(json.dumps(optimizer[1]) + "\n")
        save_file(rng[0], str(folder / f"{RNG}.safetensors"))
        (folder / f"{RNG}.json").write_text(json.dumps(rng[1]) + "\n")
        (folder / TRAINER).write_text(json.dumps(trainer, indent=1) + "\n")
        kill_point("checkpoint-write", state.step)
    rotate(root, keep_last, run_id)
    return target


def rotate(root: Path, keep_last: int, run_id: str | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints of run ``run_id``, and what a killed rotation left."""
    for old in list_checkpoints(root, run_id)[:-keep_last]:
        discarded = old.with_name(DISCARDED + old.name)
        shutil.rmtree(discarded, ignore_errors=True)
        old.rename(discarded)  # no longer a checkpoint, even if the deletion below is killed half-way
    for leftover in root.glob(DISCARDED + "step-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def list_checkpoints(root: Path, run_id: str | None = None) -> list[Path]:
    """Complete checkpoints, oldest first; only run ``run_id``'s when given."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and (p / TRAINER).is_file()]
    return [p for _, p in sorted(found) if run_id is None or read_trainer(p).get("run_id") == run_id]


def latest_checkpoint(root: Path, run_id: str | None = None) -> Path | None:
    found = list_checkpoints(root, run_id)
    return found[-1] if found else None


# -- reading a checkpoint: every file checked --------------------------------------------------------

#: trainer.json fields a resume reads, each with the check its value must pass (REQUIRED must be there)
TRAINER_FIELDS = {
    **TrainState.checks(),
    "world_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
}
REQUIRED = ("step", "epoch", "batch")


@dataclass
class Checkpoint:
    """What a resume reads from ``folder`` besides the weights, every file checked."""

    folder: Path
    state: TrainState
    world_size: int  # processes that wrote it
    optimizer: tuple[dict[str, Tensor], dict[str, Any]]  # flattened (unflatten_optimizer)
    rng: tuple[dict[str, Tensor], dict[str, Any]]  # every rank's tensors, Python's and NumPy's (restore_rng)


def read_trainer(folder: Path) -> dict[str, Any]:
    """``folder``'s trainer.json, its fields checked: a damaged one is an error naming it."""
    path = folder / TRAINER
    state = _read_json(path)
    if not isinstance(state, dict):
        raise SoraError(f"{path}: damaged (not a JSON object)")
    for key, valid in TRAINER_FIELDS.items():
        if (key in state or key in REQUIRED) and not valid(state.get(key)):
            raise SoraError(f"{path}: damaged ({key}: {json.dumps(state.get(key))[:40]})")
    named = STEP_DIR.match(folder.name)
    if named and int(named.group(1)) != state["step"]:
        raise SoraError(f"{path}: damaged (step {state['step']} in {folder.name})")
    return state


def read_checkpoint(folder: Path) -> Checkpoint:
    """Optimizer tensors + JSON, RNG tensors + JSON and trainer state of ``folder``, each file checked."""
    rng_json = folder / f"{RNG}.json"
    rng = (_read_tensors(folder / f"{RNG}.safetensors"), _read_json(rng_json))
    check_rng(*rng, rng_json)
    optimizer = (_read_tensors(folder / f"{OPTIMIZER}.safetensors"), _read_json(folder / f"{OPTIMIZER}.json"))
    trainer = read_trainer(folder)
    return Checkpoint(folder, TrainState.from_json(trainer), trainer.get("world_size", 1), optimizer, rng)


def load_weights(model: nn.Module, folder: Path, device: str) -> None:
    """Load ``folder``'s model.safetensors into ``model`` (on ``device``): a missing, damaged or
    mismatched file is an error naming it."""
    weights = folder / "model.safetensors"
    try:
        missing, unexpected = load_weights_into(model, str(weights), strict=False, device=device)
    except FileNotFoundError:
        raise SoraError(f"{weights}: missing (an incomplete checkpoint)") from None
    except SafetensorError as e:
        raise SoraError(f"{weights}: damaged ({one_line(e)})") from None
    except (RuntimeError, OSError) as e:
        raise SoraError(f"{weights}: does not match this model ({one_line(e)})") from None
    if missing or unexpected:
        raise SoraError(f"{weights}: does not match this model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _read_tensors(path: Path) -> dict[str, Tensor]:
    return _read(path, lambda p: load_file(str(p)))


def _read_json(path: Path) -> Any:
    return _read(path, lambda p: json.loads(p.read_text()))


def _read(path: Path, reader: Callable[[Path], Any]) -> Any:
    """``reader(path)``, with any failure to read or parse it as one line naming the file."""
    try:
        return reader(path)
    except FileNotFoundError:
        raise SoraError(f"{path}: missing (an incomplete checkpoint)") from None
    except (OSError, ValueError, SafetensorError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise SoraError(f"{path}: damaged ({one_line(e)})") from None


def one_line(error: Exception) -> str:
    """The first line of an error's message, short enough for a one-line report."""
    return (str(error).splitlines() or [type(error).__name__])[0][:200]
