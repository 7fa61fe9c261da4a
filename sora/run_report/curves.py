"""The training curves of a run (loss and the validation metric against step), as an inline PNG.

The points come from what training records: ``logs/train.jsonl`` (a ``train`` record every
``log_every`` steps) and metrics.json's ``history`` (every validation). A resumed run appends to the
log and repeats the steps after its checkpoint; the last record of a step wins. matplotlib is
imported only to draw (it costs every command its import time otherwise).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

from sora.run_report.read import RunFolder

NOT_METRICS = {"step", "epoch", "loss", "time", "event"}
TRAIN_COLOUR, VALIDATION_COLOUR = "#1f5fa8", "#c0392b"


@dataclass
class Curves:
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    validation_loss: list[tuple[int, float]] = field(default_factory=list)
    metric: str | None = None  # the validation metric drawn beside the loss
    validation_metric: list[tuple[int, float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.train_loss or self.validation_loss)


def training_curves(run: RunFolder) -> Curves:
    """The points of ``run``'s loss and validation metric, one per step, in step order."""
    train = _by_step(r for r in run.train_log if r.get("event") == "train")
    validation = run.metrics.get("history") or _by_step(r for r in run.train_log if r.get("event") == "validation")
    metric = _curve_metric(run.metric, validation)
    return Curves(
        train_loss=_points(train, "loss"),
        validation_loss=_points(validation, "loss"),
        metric=metric,
        validation_metric=_points(validation, metric) if metric else [],
    )


def _by_step(records) -> list[dict]:
    latest = {r["step"]: r for r in records if isinstance(r.get("step"), int)}
    return [latest[step] for step in sorted(latest)]


def _points(records: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]


def _curve_metric(selected: str, history: list[dict]) -> str | None:
    """The metric training selected on, or (when that is the loss, drawn already) the first other one."""
    if selected != "loss":
        return selected
    keys = [k for k in (history[0] if history else {}) if k not in NOT_METRICS]
    return keys[0] if keys else None


def curves_png(curves: Curves) -> str:
    """A base64 PNG of the curves: loss on the left, the validation metric on the right (when there is one)."""
    from matplotlib.figure import Figure

    panels = 2 if curves.validation_metric else 1
    fig = Figure(figsize=(4.6 * panels, 3.0), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _plot(axes[0], curves.train_loss, "training", TRAIN_COLOUR)
    _plot(axes[0], curves.validation_loss, "validation", VALIDATION_COLOUR)
    axes[0].set(title="loss", xlabel="step")
    axes[0].legend(frameon=False, fontsize=8)
    if panels == 2:
        _plot(axes[1], curves.validation_metric, "validation", VALIDATION_COLOUR)
        axes[1].set(title=f"validation {curves.metric}", xlabel="step")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot(ax, points: list[tuple[int, float]], label: str, colour: str) -> None:
    from matplotlib.ticker import MaxNLocator

    if not points:
        return
    steps, values = zip(*points)
    marker = "o" if len(points) <= 30 else None  # a few validations read better as dots
    ax.plot(steps, values, label=label, color=colour, marker=marker, markersize=4, linewidth=1.5)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)  # from the start of training, so a short run's few points sit where they belong
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
