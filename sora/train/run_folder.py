"""The run that owns a training folder, so two runs never mix in one ``--out``.

``OUT/run.json`` holds a random run id, the machine it started on (sora.train.machine), and what
defines the run: the recipe's name, its data, the model and the training keys that shape the
trajectory. Every checkpoint's ``trainer.json`` carries the same id, so checkpoint rotation and
``--resume`` consider only the current run's checkpoints (an earlier run's are never deleted by
rotation nor picked up by a resume), and a resume with a different recipe is refused with the first
key that differs instead of continuing a different run.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

from sora.atomic import staged_file
from sora.errors import SoraError
from sora.train.checkpoint import one_line
from sora.train.config import TrainConfig
from sora.train.machine import describe_machine

RUN_FILE = "run.json"

#: train keys a resume may change: when the run ends, how it reports, where and how fast it runs
FREE_ON_RESUME = frozenset(
    {
        "epochs",
        "max_steps",
        "max_minutes",
        "quiet",
        "log_every",
        "keep_last",
        "checkpoint_every_steps",
        "num_workers",
        "device",
        "threads",
        "compile",
    }
)
#: data keys that are not part of a run's identity (and may hold secrets: never written to run.json)
DATA_NOT_IDENTITY = frozenset({"storage_options"})


def identity(cfg: TrainConfig, **parts: Any) -> dict[str, Any]:
    """What defines a run, as JSON values: ``parts`` (recipe, data, model) and the train keys that shape it."""
    train = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in FREE_ON_RESUME}
    if isinstance(parts.get("data"), dict):
        parts["data"] = {k: v for k, v in parts["data"].items() if k not in DATA_NOT_IDENTITY}
    return json.loads(json.dumps({**parts, "train": train}))


def start_run(out_dir: Path, spec: dict[str, Any]) -> str:
    """Make ``out_dir`` belong to a new run; its id."""
    run_id = uuid.uuid4().hex[:16]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        out_dir / RUN_FILE,
        {
            "run_id": run_id,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": describe_machine(),  # where its figures are measured (scripts/results_table.py)
            "spec": spec,
        },
    )
    return run_id


def resumed_run(out_dir: Path, spec: dict[str, Any]) -> str:
    """The id of the run in ``out_dir``, once ``spec`` (all of it or a part) is shown to be that run's."""
    saved = read_run(out_dir)
    if saved is None:
        raise SoraError(f"--resume: {out_dir} holds no run to resume (no {RUN_FILE}); start a new run without --resume")
    difference = first_difference(saved["spec"], spec)
    if difference is not None:
        key, was, now = difference
        raise SoraError(
            f"--resume: {out_dir / RUN_FILE}: the run was trained with {key}={was}, the recipe now says "
            f"{now}; resume with the run's recipe, or start a new run"
        )
    return saved["run_id"]


def read_run(out_dir: Path) -> dict[str, Any] | None:
    """``out_dir``'s run.json (None when there is none); a damaged one is an error naming it."""
    path = Path(out_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SoraError(f"{path}: damaged ({one_line(e)})") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("run_id"), str) and isinstance(saved.get("spec"), dict)):
        raise SoraError(f"{path}: damaged (needs a run_id and a spec)")
    return saved


def first_difference(saved: Any, now: Any, path: str = "") -> tuple[str, str, str] | None:
    """(dotted key, saved value, current value) of the first key of ``now`` whose value differs."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in now:
            where = f"{path}.{key}" if path else str(key)
            found = (
                first_difference(saved[key], now[key], where)
                if key in saved
                else (where, "(not recorded)", _show(now[key]))
            )
            if found is not None:
                return found
        return None
    return None if saved == now else (path, _show(saved), _show(now))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``path`` beside itself and rename it into place: a reader sees the old file or the new one."""
    with staged_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
