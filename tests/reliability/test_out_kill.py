"""Kill ``prune``, ``quantize`` and ``compress`` while they write: the previous output survives whole.

Each command runs in a forked child (the parent already holds torch, so a child starts in
milliseconds) over an earlier output of its own, and the parent SIGKILLs it: once the moment its
staging folder appears (inside the write, deterministically), then at random moments of its run.
After every kill ``--out`` must load and be, byte for byte, the previous output or a whole new one;
the next uninterrupted run must leave no staging folder behind.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli, snapshot
from tests.reliability.out_world import KIND_OF, world  # noqa: F401  (world: a fixture)
from tests.reliability.test_out_folders import valid_output

KILLS = {
    "prune": 8,
    "quantize": 8,
    "compress": 2,
}  # kills at the moment staging starts until one lands inside the write, then at random
RUN_SECONDS = {"prune": 0.3, "quantize": 0.3, "compress": 1.5}  # the span random kills are drawn from


def staging(out: Path) -> list[str]:
    return [n for n in os.listdir(out.parent) if n.startswith(f".{out.name}.sora-")]


def run_and_kill(argv: list, out: Path, delay: float | None) -> bool:
    """Run ``sora ARGV`` in a child and SIGKILL it once it is staging (``delay`` None) or after ``delay``
    seconds; True when the kill ended it (False: it had finished)."""
    pid = os.fork()
    if pid == 0:  # the child runs the command and never returns into pytest
        try:
            run_cli(None, *argv)
        finally:
            os._exit(0)
    deadline = time.monotonic() + (60 if delay is None else delay)
    while time.monotonic() < deadline and not (delay is None and staging(out)):
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


@pytest.mark.parametrize("command", list(KILLS))
def test_a_killed_write_leaves_the_previous_output_whole(world, tmp_path, command):
    kind, rng = KIND_OF[command], random.Random(0)
    out = tmp_path / "out"
    shutil.copytree(world.samples[kind], out)  # an earlier output of the same command
    argv = [*world.command(command), "--out", out]
    previous, seen = snapshot(out), []
    killed = mid_write = 0
    k = 0
    while k < KILLS[command] or (not mid_write and k < KILLS[command] + 20):  # a tiny write can beat the kill
        killed += run_and_kill(argv, out, None if k == 0 or not mid_write else rng.uniform(0, RUN_SECONDS[command]))
        mid_write += bool(staging(out))
        assert valid_output(kind, out), f"kill {k}: --out does not load"
        seen.append(snapshot(out))
        k += 1
    assert killed and mid_write, (killed, mid_write)  # at least one kill landed inside the write
    assert run_cli(None, *argv).code == 0
    assert not staging(out) and valid_output(kind, out)
    if command != "compress":  # (its report holds timings, so no two are the same bytes)
        assert all(s in (previous, snapshot(out)) for s in seen)  # the old output, or a whole new one
