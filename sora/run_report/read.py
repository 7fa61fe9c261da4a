"""What a ``sora run`` folder holds, read back from its JSON files into one object.

The run report and ``scripts/results_table.py`` both start here, so a figure means the same thing on
the page and in the table: the headline metric is the one training selected on (metrics.json
``best.metric``), measured on the test split when the run has one, else on validation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sora.errors import SoraError

COMPRESSED = "pruned+int8"  # the variant a results table compares with the trained model


@dataclass
class RunFolder:
    path: Path
    metrics: dict[str, Any]  # metrics.json (sora.train.job)
    run: dict[str, Any] = field(default_factory=dict)  # run.json: id, start, machine, spec
    model_config: dict[str, Any] = field(default_factory=dict)  # model/config.json
    analysis: dict[str, Any] | None = None  # analysis/analysis.json
    compression: dict[str, Any] | None = None  # compressed/report.json
    export: dict[str, Any] | None = None  # export/meta.json's "export" object
    train_log: list[dict[str, Any]] = field(default_factory=list)  # logs/train.jsonl, one record per event

    @property
    def name(self) -> str:
        return self.metrics.get("recipe") or self.path.name

    @property
    def task(self) -> str:
        return self.metrics.get("task", "")

    @property
    def metric(self) -> str:
        """The metric training selected its best model on (accuracy, macro_f1, loss ...)."""
        return (self.metrics.get("best") or {}).get("metric") or "loss"

    @property
    def split(self) -> str:
        """test when the run measured one, else validation (a language model without a test split)."""
        return "test" if self.metrics.get("test") else "validation"

    @property
    def score(self) -> float | None:
        return (self.metrics.get(self.split) or {}).get(self.metric)

    @property
    def compressed(self) -> dict[str, Any] | None:
        """The pruned+int8 variant of compressed/report.json (metrics, bytes, smaller, speedup by batch)."""
        return ((self.compression or {}).get("variants") or {}).get(COMPRESSED)

    @property
    def model_bytes(self) -> int | None:
        variants = (self.compression or {}).get("variants", {})
        if "fp32" in variants:
            return variants["fp32"].get("bytes")
        weights = self.path / "model" / "model.safetensors"
        return weights.stat().st_size if weights.is_file() else None

    @property
    def train_seconds(self) -> float | None:
        minutes = (self.metrics.get("train") or {}).get("minutes")
        return None if minutes is None else minutes * 60


def speedups(variant: dict[str, Any]) -> str:
    """A variant's speed-up over fp32 at each measured batch size: "1.08x (b1), 1.40x (b32)"."""
    return ", ".join(f"{x:.2f}x (b{b})" for b, x in (variant.get("speedup") or {}).items()) or "–"


def machine_line(machine: dict[str, Any]) -> str:
    """run.json's machine in words: "CPU model, N cores, GPU, torch V"."""
    parts = [machine.get("cpu"), machine.get("cores") and f"{machine['cores']} cores", machine.get("gpu")]
    parts.append(machine.get("torch") and f"torch {machine['torch']}")
    return ", ".join(str(p) for p in parts if p) or "unknown"


def read_run_folder(path: str | Path) -> RunFolder:
    """The JSON outputs of run folder ``path``; a folder without metrics.json is no finished run (an error)."""
    path = Path(path)
    metrics = read_json(path / "metrics.json")
    if metrics is None:
        raise SoraError(f"{path}: no metrics.json (not a finished `sora run` or `sora train` folder)")
    export_meta = read_json(path / "export" / "meta.json") or {}
    return RunFolder(
        path=path,
        metrics=metrics,
        run=read_json(path / "run.json") or {},
        model_config=read_json(path / "model" / "config.json") or {},
        analysis=read_json(path / "analysis" / "analysis.json"),
        compression=read_json(path / "compressed" / "report.json"),
        export=export_meta.get("export"),
        train_log=read_jsonl(path / "logs" / "train.jsonl"),
    )


def read_json(path: Path) -> Any:
    """``path``'s JSON value, None when there is no such file; a damaged file is an error naming it."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SoraError(f"{path}: not readable JSON ({e})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; a line cut short by a kill (the last one) is skipped, not an error."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
