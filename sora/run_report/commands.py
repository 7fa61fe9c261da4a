"""The commands that use a run's result, right for its task: each is a real ``sora`` command line.

A classifier is evaluated (``sora eval``) and predicts files (``sora predict``); a language model or a
translator writes text (``sora generate``); anything exported is served (``sora serve``). ``sora eval``
reads the run's data section from ``OUT/data.yaml`` (written beside the report), so it measures the
same split the run did.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from sora.compress.stage import FOLDERS
from sora.run_report.read import COMPRESSED, RunFolder

DATA_YAML = "data.yaml"
GENERATING = {"lm", "seq2seq"}
PROMPTS = {"lm": "The ", "seq2seq": "Good morning."}
INPUTS = {  # what `sora predict --input` takes, by the model's input
    "text": ("texts.txt", "a file of texts, one per line (or CSV/JSONL with --column)"),
    "image": ("images/", "a folder of images"),
    "audio": ("clips/", "a folder of WAV files"),
}


@dataclass(frozen=True)
class Command:
    line: str  # the command, shell-quoted
    why: str  # what it does, in a few words


def usage_commands(run: RunFolder, *, has_data_yaml: bool) -> list[Command]:
    """The commands to evaluate, use and serve the run in ``run.path`` (its path as the run was given it)."""
    out = run.path
    commands = []
    if has_data_yaml:
        commands.append(
            Command(
                _join("sora", "eval", out / "model", "--data", out / DATA_YAML, "--split", run.split),
                f"measure the model on the {run.split} split again",
            )
        )
    served = out / "export" if run.export is not None else out / "model"
    commands.append(_use(run, out / "model" if run.task in GENERATING else served))
    if COMPRESSED in (run.compression or {}).get("folders", {}):
        compressed = _use(run, out / "compressed" / FOLDERS[COMPRESSED])
        commands.append(Command(compressed.line, f"the same with the pruned+int8 model ({compressed.why})"))
    commands.append(Command(_join("sora", "serve", served), "an HTTP service and the particle explorer page"))
    commands.append(Command(_join("tensorboard", "--logdir", out / "logs"), "the training curves, step by step"))
    return commands


def _use(run: RunFolder, model: Path) -> Command:
    """What the task does with a model folder: generate text, or predict a file of inputs."""
    if run.task in GENERATING:
        return Command(_join("sora", "generate", model, "--prompt", PROMPTS[run.task]), "write text")
    source, what = INPUTS.get(run.model_config.get("input", "text"), INPUTS["text"])
    return Command(
        _join("sora", "predict", model, "--input", source, "--output", "predictions.jsonl"),
        f"predict {what}, one JSON line per record",
    )


def _join(*parts: str | Path) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)
