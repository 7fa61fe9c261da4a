#!/usr/bin/env python
"""Kill ``sora train`` at random moments, resume it, and check it ends bit-identical to a run never killed.

    python scripts/kill_resume.py [--kills 10] [--per-trial 2] [--timed 3] [--seed 0] [--work DIR]

A tiny classifier recipe (dropout on; validation every 2 steps, a checkpoint every 3; early stopping
ends it at step 14 of 40) trains once, uninterrupted: the reference. Each trial trains the same
recipe in a fresh folder and SIGKILLs it: at exact points drawn from a seeded RNG, named through the
trainer's ``SORA_KILL_AT`` hook (sora.train.killpoints: after a step, after a validation and its
early-stopping decision, inside a checkpoint write, after a checkpoint, after training, after the
model is saved), always including a checkpoint write and the moments right after the early-stop
decision; and, with ``--timed``, from outside at a random moment of the reference's training time
(counted from when the run owns its folder). After each kill the run is resumed with ``--resume``
until it finishes. Then every tensor of ``model/`` and ``best/`` must be ``torch.equal`` to the reference's,
and ``metrics.json`` identical apart from the wall-clock fields (``WALL_CLOCK``) and the folder path
(``model_dir``). Prints a JSON summary. tests/reliability/test_kill_resume.py runs a few of the same
kills in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from sora.train.killpoints import ENV, PHASES
from sora.train.run_folder import RUN_FILE

KILLED = -9  # subprocess's return code for a child ended by SIGKILL
#: metrics.json fields (section, key) that time the run
WALL_CLOCK = (("train", "minutes"), ("train", "examples_per_s"), ("train", "tokens_per_s"), ("baseline", "seconds"))
NOT_COMPARED = ("model_dir",)  # the folder's path: the reference and a trial live in different folders
WORDS = {
    "fresh": ["great", "lovely", "superb", "fine", "moving", "funny"],
    "rotten": ["awful", "dull", "boring", "weak", "messy", "flat"],
}
TRAIN = {
    "max_steps": 40,
    "batch_size": 16,
    "lr": 3e-3,
    "quiet": True,
    "threads": 1,
    "log_every": 1,
    "validate_every_steps": 2,
    "checkpoint_every_steps": 3,
    "early_stopping": {"metric": "loss", "patience": 2, "min_delta": 0.01},
}


# -- the recipe and one `sora train` --------------------------------------------------------------------


def write_recipe(folder: Path) -> Path:
    """A 160-review CSV and a recipe that trains on it in seconds, with dropout and early stopping."""
    rng = random.Random(0)
    rows = ["text,label"]
    for i in range(160):
        label = ("rotten", "fresh")[i % 2]
        words = rng.sample(WORDS[label], 2) + rng.sample(["a", "film", "plot", "the", "story"], 2)
        rng.shuffle(words)
        rows.append(f"{' '.join(words)},{label}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reviews.csv").write_text("\n".join(rows) + "\n")
    recipe = {
        "name": "kill-resume",
        "data": {
            "source": str(folder / "reviews.csv"),
            "split": {"validation": 0.2, "test": 0.2, "seed": 0},
            "tokenizer": {"kind": "wordpiece", "vocab_size": 100, "min_frequency": 1},
        },
        "model": {
            "arch": "encoder_classifier",
            "vocab_size": 100,
            "d_model": 32,
            "max_len": 32,
            "dropout": 0.1,
            "encoder": {"n_layers": 1, "n_heads": 2, "d_ff": 64},
            "n_classes": 2,
            "pooling": "mean",
        },
        "train": TRAIN,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def train(
    recipe: Path, out: Path, *, kill_at: str | None = None, kill_after_s: float | None = None, timeout: float = 300
) -> int:
    """One ``sora train`` process (``--resume`` once ``out`` holds a run); its return code, KILLED if killed.

    ``kill_at``: a hook point where it kills itself; ``kill_after_s``: SIGKILL it from outside that many
    seconds after the run owns ``out`` (its run.json is there), wherever the run then is."""
    command = [sys.executable, "-m", "sora", "train", str(recipe), "--out", str(out)]
    if (out / RUN_FILE).is_file():
        command.append("--resume")
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if kill_at:
        env[ENV] = kill_at
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            if kill_after_s is not None:
                _kill_after(proc, out / RUN_FILE, kill_after_s)
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        if proc.returncode not in (0, KILLED):
            err.seek(0)
            raise RuntimeError(f"sora train {' '.join(command[5:])} exited {proc.returncode}: {err.read()[-500:]}")
    return proc.returncode


def _kill_after(proc: subprocess.Popen, started: Path, delay: float) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after ``started`` exists, unless it ends first."""
    deadline = None
    while proc.poll() is None:
        if deadline is None and started.is_file():
            deadline = time.monotonic() + delay
        if deadline is not None and time.monotonic() >= deadline:
            proc.kill()
            return
        time.sleep(0.01)


# -- where to kill ------------------------------------------------------------------------------------


def kill_points(reference: Path) -> list[tuple[str, int]]:
    """Every hook point the reference run passed, in the order a run meets them."""
    metrics = json.loads((reference / "metrics.json").read_text())
    last = metrics["train"]["steps"]
    validated = {r["step"] for r in metrics["history"]}
    every = TRAIN["checkpoint_every_steps"]
    checkpointed = validated | {s for s in range(1, last + 1) if s % every == 0} | {last}
    points = [("step", s) for s in range(1, last + 1)]
    points += [("validated", s) for s in validated]
    points += [(phase, s) for s in checkpointed for phase in ("checkpoint-write", "checkpointed")]
    points += [("trained", last), ("saved", last)]
    return sorted(points, key=progress)


def progress(point: tuple[str, int]) -> tuple[int, int]:
    phase, step = point
    return step, PHASES.index(phase)


def required_points(reference: Path, rng: random.Random) -> list[tuple[str, int]]:
    """A checkpoint write before the end, and the moments right after the early-stop decision."""
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["train"]["stopped"] == "early_stopping", "the recipe must stop early"
    last = metrics["train"]["steps"]
    writes = [s for phase, s in kill_points(reference) if phase == "checkpoint-write" and s < last]
    return [("checkpoint-write", rng.choice(writes)), ("validated", last), ("checkpointed", last)]


def draw_points(reference: Path, kills: int, rng: random.Random) -> list[tuple[str, int]]:
    """``kills`` distinct hook points: the required ones first, the rest at random."""
    chosen = required_points(reference, rng)[:kills]
    rest = [p for p in kill_points(reference) if p not in chosen]
    return chosen + rng.sample(rest, kills - len(chosen))


# -- a trial and its verdict ----------------------------------------------------------------------------


def kill_and_resume(
    recipe: Path, out: Path, points: list[tuple[str, int]] = (), delays: list[float] = ()
) -> dict[str, int]:
    """Train into ``out``, killed at each point (in run order) or after each delay, resuming until it ends.

    A delay longer than the run lets it finish: it counts as a launch, not a kill."""
    launches = [{"kill_at": f"{phase}@{step}"} for phase, step in sorted(points, key=progress)]
    launches += [{"kill_after_s": delay} for delay in delays]
    counts = {"kills": 0, "resumes": 0, "launches": 0}
    for launch in launches + [{}]:
        counts["resumes"] += (out / RUN_FILE).is_file()
        code = train(recipe, out, **launch)
        counts["launches"] += 1
        counts["kills"] += code == KILLED
        if code == 0 and launch:  # the run ended before this kill point
            break
    if not (out / "metrics.json").is_file():
        raise RuntimeError(f"{out}: the run did not finish")
    return counts


def differences(reference: Path, out: Path) -> list[str]:
    """What differs between two finished runs: tensors of model/ and best/, and metrics.json."""
    found = []
    for folder in ("model", "best"):
        a, b = (load_file(str(run / folder / "model.safetensors")) for run in (reference, out))
        if a.keys() != b.keys():
            found.append(f"{folder}: tensors {sorted(a.keys() ^ b.keys())}")
        found += [f"{folder}/{name}" for name in sorted(a.keys() & b.keys()) if not torch.equal(a[name], b[name])]
    ma, mb = (comparable_metrics(run) for run in (reference, out))
    found += [f"metrics.json: {key}" for key in sorted(ma.keys() | mb.keys()) if ma.get(key) != mb.get(key)]
    return found


def comparable_metrics(run: Path) -> dict:
    """metrics.json without the wall-clock fields and the folder path."""
    metrics = json.loads((run / "metrics.json").read_text())
    for section, key in WALL_CLOCK:
        metrics.get(section, {}).pop(key, None)
    return {k: v for k, v in metrics.items() if k not in NOT_COMPARED}


# -- the command ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="kills at hook points drawn at random")
    parser.add_argument("--per-trial", type=int, default=2, help="kills of one run before it may finish")
    parser.add_argument("--timed", type=int, default=3, help="trials killed from outside after a random delay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    rng = random.Random(args.seed)
    recipe = write_recipe(work)
    started = time.monotonic()
    reference = work / "reference"
    assert train(recipe, reference) == 0
    training_s = (reference / "metrics.json").stat().st_mtime - (reference / RUN_FILE).stat().st_mtime
    points = draw_points(reference, args.kills, rng)
    rng.shuffle(points)
    trials = [{"points": points[i : i + args.per_trial]} for i in range(0, len(points), args.per_trial)]
    trials += [{"delays": [rng.uniform(0, training_s)]} for _ in range(args.timed)]
    summary = {
        "seed": args.seed,
        "kills": 0,
        "hook_kills": 0,
        "timed_kills": 0,
        "resumes": 0,
        "launches": 1,
        "trials": len(trials),
        "identical": 0,
        "kill_points": [f"{p}@{s}" for p, s in sorted(points, key=progress)],
        "timed_delays_s": [round(t["delays"][0], 2) for t in trials if "delays" in t],
        "excluded_from_metrics": [f"{s}.{k}" for s, k in WALL_CLOCK] + list(NOT_COMPARED),
        "differences": {},
    }
    for i, trial in enumerate(trials):
        out = work / f"trial-{i}"
        counts = kill_and_resume(recipe, out, trial.get("points", []), trial.get("delays", []))
        for key in ("kills", "resumes", "launches"):
            summary[key] += counts[key]
        summary["timed_kills" if "delays" in trial else "hook_kills"] += counts["kills"]
        found = differences(reference, out)
        summary["identical"] += not found
        if found:
            summary["differences"][out.name] = found[:10]
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["identical"] == result["trials"] else 1)
