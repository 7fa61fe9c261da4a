"""Where a training run is, and the rules that end it: what a checkpoint's ``trainer.json`` holds.

``TrainState`` is the run's position (step, epoch, batch, time), its best validation and early-stopping
count, its stop decision and validation history; ``to_json``/``from_json`` are the checkpoint's view
of it, and each field carries the check its saved value must pass (sora.train.checkpoint reads them).
``stop_reason`` says why a run ends, both when a resume starts and after every step; ``BestTracker``
applies the selection metric: which validation is the best so far, and when to stop early.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from sora.errors import ConfigError
from sora.train.config import TrainConfig

#: stop decisions a checkpoint may hold; "interrupted" (Ctrl-C, stop_after_steps) is never saved: a resume goes on
SAVED_STOP_REASONS = (None, "epochs", "max_steps", "max_minutes", "early_stopping")


# -- checks of saved values (trainer.json is read from disk: any value may be damaged) -------------


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _best(v: Any) -> bool:
    return v is None or (
        isinstance(v, dict)
        and isinstance(v.get("metric"), str)
        and v.get("mode") in ("min", "max")
        and _number(v.get("value"))
        and _count(v.get("step"))
    )


def _history(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(r, dict) and _count(r.get("step")) for r in v)


def _saved_stop(v: Any) -> bool:
    return v in SAVED_STOP_REASONS


def _checked(check: Callable[[Any], bool], default: Any = 0) -> Any:
    """A dataclass field whose saved value must pass ``check``."""
    return field(default=default, metadata={"check": check})


@dataclass
class TrainState:
    """A run's position and decisions: everything a resume needs besides weights, optimizer and RNGs."""

    step: int = _checked(_count)  # optimizer steps done
    epoch: int = _checked(_count)  # epochs done
    batch: int = _checked(_count)  # batches of the current epoch done
    elapsed_s: float = _checked(_number, 0.0)  # training seconds, summed over the run's resumes
    best: dict[str, Any] | None = _checked(_best, None)  # {"metric", "mode", "value", "step"}
    bad_validations: int = _checked(_count)  # validations since the best one
    stopped: str | None = _checked(_saved_stop, None)  # the stop decision (never "interrupted")
    history: list[dict[str, Any]] = field(default_factory=list, metadata={"check": _history})  # every validation
    examples: int = _checked(_number)  # examples trained on (all processes)
    tokens: int = _checked(_number)  # target tokens trained on (all processes)
    scaler: dict[str, Any] | None = None  # fp16 gradient scaler's state

    @classmethod
    def checks(cls) -> dict[str, Callable[[Any], bool]]:
        """Each saved field's check, in field order."""
        return {f.name: f.metadata["check"] for f in fields(cls) if "check" in f.metadata}

    def to_json(self) -> dict[str, Any]:
        """The state as JSON values, in field order (no scaler key without a scaler)."""
        out = asdict(self)
        if out["scaler"] is None:
            del out["scaler"]
        return out

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> TrainState:
        """The state from a checked trainer.json (sora.train.checkpoint.read_trainer): its other keys ignored."""
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})

    def position(self, n_batches: int) -> float:
        """Epochs done, as a fraction."""
        return self.epoch + self.batch / n_batches


# -- when a run ends ------------------------------------------------------------------------------------


def total_steps(cfg: TrainConfig, n_batches: int) -> int | None:
    """The run's length in optimizer steps: the smaller of max_steps and epochs' (None: only time ends it)."""
    total = cfg.max_steps
    if cfg.epochs is not None:
        by_epochs = math.ceil(cfg.epochs * math.ceil(n_batches / cfg.grad_accum))
        total = min(total, by_epochs) if total else by_epochs
    return total


def over_time(cfg: TrainConfig, elapsed_s: float) -> bool:
    """Whether the run has used its max_minutes."""
    return bool(cfg.max_minutes) and elapsed_s >= cfg.max_minutes * 60


def stop_reason(
    cfg: TrainConfig,
    step: int,
    total: int | None,
    *,
    time_up: bool = False,
    halted: bool = False,
    early_stopped: bool = False,
) -> str | None:
    """Why the run ends at ``step`` (None: it goes on), first reason first: an early stop already
    decided, the run's length, its time budget, an interruption."""
    if early_stopped:
        return "early_stopping"
    if total is not None and step >= total:
        return "max_steps" if cfg.max_steps == total else "epochs"
    if time_up:
        return "max_minutes"
    if halted:
        return "interrupted"
    return None


# -- the best model and early stopping -------------------------------------------------------------------


def validation_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A validation record's metrics, without its step and epoch."""
    return {k: v for k, v in record.items() if k not in ("step", "epoch")}


@dataclass(frozen=True)
class BestTracker:
    """The selection rule: the metric that picks OUT/best, which way is better, by how much, and how many
    validations without improvement stop the run. What it has seen lives in the TrainState, so it is
    checkpointed with the run."""

    metric: str
    mode: str  # min | max
    min_delta: float = 0.0
    patience: int | None = None  # None: no early stopping

    @classmethod
    def from_config(cls, cfg: TrainConfig, task_default: str) -> BestTracker:
        metric, mode = cfg.selection(task_default)
        stopping = cfg.early_stopping
        return cls(metric, mode, stopping.min_delta if stopping else 0.0, stopping.patience if stopping else None)

    def observe(self, state: TrainState, record: dict[str, Any], task: str) -> bool:
        """Count validation ``record`` into ``state``; True when it is the best so far."""
        if self.metric not in record:
            raise ConfigError(
                f"train.best_metric / train.early_stopping.metric: {self.metric!r} is not a validation "
                f"metric of the {task} task (has: {', '.join(validation_metrics(record))})"
            )
        value = record[self.metric]
        if not self._better(value, state.best):
            state.bad_validations += 1
            return False
        state.best = {"metric": self.metric, "mode": self.mode, "value": value, "step": record["step"]}
        state.bad_validations = 0
        return True

    def exhausted(self, state: TrainState) -> bool:
        """Whether the run has waited ``patience`` validations for an improvement."""
        return self.patience is not None and state.bad_validations >= self.patience

    def _better(self, value: float, best: dict[str, Any] | None) -> bool:
        if best is None:
            return True
        if self.mode == "min":
            return value < best["value"] - self.min_delta
        return value > best["value"] + self.min_delta
