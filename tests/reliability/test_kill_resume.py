"""Kill and resume (issue 19, defects 2 and 3): a real ``sora train`` SIGKILLed at chosen moments and
resumed ends bit-identical to a run never killed: every tensor of model/ and best/ ``torch.equal``, and
metrics.json identical apart from its wall-clock fields (scripts/kill_resume.py WALL_CLOCK: train.minutes,
train.examples_per_s, train.tokens_per_s, baseline.seconds) and model_dir (the folder's path).

scripts/kill_resume.py does the same at 10 moments and at random wall-clock delays; here three kills,
drawn from a seeded RNG, keep the suite's share small: one inside a checkpoint write, one right after
the early-stop decision and its checkpoint (the run is over but not finished: the resume used to train
on past the stop), and one anywhere.
"""

from __future__ import annotations

import random

from scripts.kill_resume import differences, kill_and_resume, kill_points, required_points, write_recipe
from tests.helpers import run_cli


def test_a_run_killed_three_times_and_resumed_ends_bit_identical(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    reference = tmp_path / "reference"
    assert run_cli(capsys, "train", recipe, "--out", reference).code == 0  # in this process: one start-up fewer
    rng = random.Random(19)
    write, _, stopped = required_points(reference, rng)
    points = [write, stopped]
    points.append(rng.choice([p for p in kill_points(reference) if p not in points]))

    counts = kill_and_resume(recipe, tmp_path / "killed", points)

    assert counts == {"kills": 3, "resumes": 3, "launches": 4}  # every chosen moment was reached and killed
    assert differences(reference, tmp_path / "killed") == []
