"""Which stages of a ``sora run`` are done, so that running the same command again skips them.

Each stage (build or train, analyze, compress, export) has a *fingerprint*: the SHA-256 of the resolved
recipe sections it reads (after the profile and ``--set`` overrides) and of the fingerprints of the stages
it reads from. ``OUT/stages.json`` records a stage's fingerprint once its outputs are complete, and drops
it (and those of the stages that read from it) before the stage is redone, so a run killed at any moment
never leaves a stage marked done over stale or missing outputs. A stage is skipped when its recorded
fingerprint is today's and its outputs are on disk.

The file also holds the fingerprint of the training under way (``training``): a run killed mid-training
continues from its newest checkpoint when the command is run again with the same train settings.
Under torchrun nothing is skipped (every process must take the same decision, and only rank 0 writes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sora.atomic import staged_file
from sora.deploy.export import is_export_dir
from sora.errors import SoraError
from sora.models.folder import CONFIG, WEIGHTS, load_tokenizer
from sora.recipe import Recipe
from sora.train.job import prepare_recipe_data

STAGES_FILE = "stages.json"
#: train keys that change how a run reports, not what it makes: changing them does not retrain
REPORTING_KEYS = frozenset({"quiet", "log_every", "num_workers", "keep_last"})


def upstream(recipe: Recipe) -> dict[str, tuple[str, ...]]:
    """Each stage of ``recipe`` and the stages whose outputs it reads."""
    if recipe.train is None:
        return {"build": ()}
    stages: dict[str, tuple[str, ...]] = {"train": ()}
    if recipe.analyze is not None:
        stages["analyze"] = ("train",)
    if recipe.compress is not None:
        evidence = recipe.analyze is not None and recipe.compress.prune.scores is None  # importance from analysis
        stages["compress"] = ("train", "analyze") if evidence else ("train",)
    if recipe.export is not None:
        pruned = recipe.export.model == "pruned" and recipe.compress is not None
        stages["export"] = ("train", "compress") if pruned else ("train",)
    return stages


def fingerprints(recipe: Recipe) -> dict[str, str]:
    """The fingerprint of every stage of ``recipe``, in the order they run."""
    sections = recipe.model_dump(mode="json")
    model_part = {key: sections[key] for key in ("name", "model", "init")}
    reads = {
        "build": model_part,
        "train": {
            **model_part,
            "data": sections["data"],
            "data_files": data_files(sections["data"]),
            "train": {k: v for k, v in (sections["train"] or {}).items() if k not in REPORTING_KEYS},
        },
    }
    prints: dict[str, str] = {}
    for stage, sources in upstream(recipe).items():
        own = reads.get(stage) or {stage: sections[stage]}
        prints[stage] = _digest({"reads": own, "upstream": {s: prints[s] for s in sources}})
    return prints


def data_files(data: dict | None) -> list[tuple[str, int, int]]:
    """(path, size, modification time) of every local file the data section reads, so that a rerun after the
    user edited their CSV trains anew. A built-in dataset is named by the section alone (its cache changes only
    with Sora's layout for it); a remote source (s3://, http://) by its URL: stating it would need the network."""
    source = (data or {}).get("source")
    urls = list(source.values()) if isinstance(source, dict) else [source] if source else []
    found = []
    for url in urls:
        path = str(url).removeprefix("file://")
        if "://" in path:
            continue
        for file in _files(Path(path)):
            stat = file.stat()
            found.append((str(file), stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def _files(path: Path) -> list[Path]:
    """The files at ``path``: the file, every file under a folder, or the matches of a glob."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    if any(ch in str(path) for ch in "*?["):
        anchor = Path(path.anchor or ".")
        return [p for p in anchor.glob(str(path.relative_to(anchor))) if p.is_file()]
    return []


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def outputs_complete(stage: str, out_dir: Path) -> bool:
    """Whether ``stage``'s outputs are in ``out_dir`` (each is written whole or not at all: sora.atomic)."""
    if stage in ("build", "train"):
        model = out_dir / "model"
        whole = (model / CONFIG).is_file() and (model / WEIGHTS).is_file()
        return whole and (stage == "build" or recorded_metrics(out_dir) is not None)
    if stage == "analyze":
        return (out_dir / "analysis" / "analysis.json").is_file()
    if stage == "compress":
        return (out_dir / "compressed" / "report.json").is_file()
    return is_export_dir(out_dir / "export")


def recorded_metrics(out_dir: Path) -> dict | None:
    """OUT/metrics.json as training wrote it, or None when it is missing or unreadable."""
    try:
        metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


@dataclass
class StageBook:
    """OUT/stages.json, read once: what is done, and the decisions of this run."""

    out_dir: Path
    recipe: str
    prints: dict[str, str]  # today's fingerprints
    deps: dict[str, tuple[str, ...]]
    done: dict[str, dict] = field(default_factory=dict)  # stage -> {"fingerprint", "finished"}
    training: str | None = None  # the fingerprint of the training whose checkpoints OUT holds
    writes: bool = True  # rank 0 only
    decides: bool = True  # False under torchrun: nothing is skipped

    @classmethod
    def open(cls, out_dir: Path, recipe: Recipe) -> StageBook:
        book = cls(Path(out_dir), recipe.name, fingerprints(recipe), upstream(recipe))
        book.writes = int(os.environ.get("RANK", "0")) == 0
        book.decides = int(os.environ.get("WORLD_SIZE", "1")) == 1
        saved = read_stages(book.out_dir)
        if saved is not None and saved["recipe"] != recipe.name:  # `--resume` given another recipe's run
            raise SoraError(
                f"{book.out_dir / STAGES_FILE}: the run there is recipe '{saved['recipe']}', not '{recipe.name}'; "
                "run it into another folder, or pass --force to start over"
            )
        if saved is not None and book.decides:
            book.done, book.training = dict(saved["stages"]), saved.get("training")
        return book

    def skips(self, stage: str) -> bool:
        """Whether ``stage`` is done with today's settings and its outputs are whole."""
        entry = self.done.get(stage) or {}
        return entry.get("fingerprint") == self.prints[stage] and outputs_complete(stage, self.out_dir)

    def continues_training(self) -> bool:
        """Whether OUT holds checkpoints of a training with today's train settings, to continue."""
        return self.decides and self.training == self.prints["train"] and (self.out_dir / "run.json").is_file()

    def changed(self, stage: str) -> bool:
        """Whether ``stage`` was done before with other settings (to say why it runs again)."""
        return stage in self.done and self.done[stage].get("fingerprint") != self.prints[stage]

    def begin(self, stage: str) -> None:
        """Forget ``stage`` and every stage that reads from it, before ``stage`` rewrites its outputs."""
        for name in self._dependents(stage):
            self.done.pop(name, None)
        if stage == "train":
            self.training = self.prints["train"]
        self._save()

    def finish(self, stage: str) -> None:
        """Record ``stage`` as done: call it once its outputs are complete."""
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.done[stage] = {"fingerprint": self.prints[stage], "finished": now}
        self._save()

    def _dependents(self, stage: str) -> list[str]:
        found = [stage]
        for name, sources in self.deps.items():  # in run order: a dependent comes after what it reads
            if any(s in found for s in sources):
                found.append(name)
        return found

    def _save(self) -> None:
        if not self.writes:
            return
        record = {"recipe": self.recipe, "training": self.training, "stages": self.done}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with staged_file(self.out_dir / STAGES_FILE) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")


def read_stages(out_dir: Path) -> dict | None:
    """OUT/stages.json (None when there is none); a damaged one is an error naming it."""
    path = Path(out_dir) / STAGES_FILE
    if not path.is_file() or path.is_symlink():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SoraError(f"{path}: damaged ({type(e).__name__}); pass --force to run every stage anew") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("recipe"), str) and isinstance(saved.get("stages"), dict)):
        raise SoraError(f"{path}: damaged (needs a recipe and stages); pass --force to run every stage anew")
    return saved


def continues_run(out: str | Path, recipe: Recipe) -> bool:
    """Whether ``out`` holds a ``sora run`` of this same recipe (by name), which running it again continues."""
    out = Path(out)
    if out.is_symlink() or not out.is_dir():
        return False
    saved = read_stages(out)
    return saved is not None and saved["recipe"] == recipe.name


@dataclass(frozen=True)
class RecordedResult:
    """The part of a training result later stages read back: why training stopped."""

    stopped: str | None


@dataclass
class RecoveredRun:
    """What a skipped train stage hands to later stages, read back from OUT instead of retrained.

    The data is prepared on first use only (a rerun that skips analyze and compress never needs it), with the
    model folder's own tokenizer: the same ids the model was trained on, without training a tokenizer again.
    """

    recipe: Recipe
    out_dir: Path
    metrics: dict
    main: bool = True

    @property
    def model_dir(self) -> Path:
        return self.out_dir / "model"

    @property
    def result(self) -> RecordedResult:
        return RecordedResult((self.metrics.get("train") or {}).get("stopped"))

    @cached_property
    def data(self):
        return prepare_recipe_data(self.recipe.data, self.out_dir, tokenizer=load_tokenizer(self.model_dir))


def recovered_run(recipe: Recipe, out_dir: Path) -> RecoveredRun:
    return RecoveredRun(recipe, out_dir, recorded_metrics(out_dir) or {})
