"""What a run reports: TensorBoard event files, a JSONL log and a progress bar.

``OUT/logs/tensorboard/`` holds the event files (``tensorboard --logdir OUT/logs``), and
``OUT/logs/train.jsonl`` one JSON object per line (``{"event": "train" | "validation" | ...,
"step": N, ...}``) for scripts. The progress bar shows the step, ETA, loss and examples or tokens
per second; quiet mode and non-zero ranks show and write nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


class RunLog:
    def __init__(
        self, out_dir: Path, *, enabled: bool = True, quiet: bool = False, total: int | None = None, initial: int = 0
    ):
        self.enabled, self.quiet = enabled, quiet or not enabled
        self.writer = self.bar = self.jsonl = None
        if not enabled:
            return
        logs = out_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter  # 0.65 s to import: only when a run logs

        self.writer = SummaryWriter(log_dir=str(logs / "tensorboard"))
        self.jsonl = open(logs / "train.jsonl", "a", encoding="utf-8")
        if not self.quiet:
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)

    def scalars(self, group: str, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{group}/{key}", value, step)

    def event(self, event: str, step: int, **fields: Any) -> None:
        if self.jsonl is None:
            return
        record = {"event": event, "step": step, "time": round(time.time(), 3), **fields}
        self.jsonl.write(json.dumps(record, default=float) + "\n")
        self.jsonl.flush()

    def advance(self, steps: int = 1, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.update(steps)
            if postfix:
                self.bar.set_postfix({k: _short(v) for k, v in postfix.items()}, refresh=False)

    def say(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
        self.writer = self.bar = self.jsonl = None


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
