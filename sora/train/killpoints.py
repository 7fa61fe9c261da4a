"""A hook for kill-and-resume checks: the process SIGKILLs itself at a named point of a run.

``SORA_KILL_AT=phase@step[,phase@step...]`` (unset: nothing happens) lets a test kill ``sora train``
at an exact moment instead of a lucky one. The phases, in the order a step meets them:

- ``step``: an optimizer step is done; no validation or checkpoint for it yet;
- ``validated``: its validation, best-model save and early-stopping decision are done, its checkpoint not;
- ``checkpoint-write``: inside the checkpoint write, every file staged, not yet renamed into place;
- ``checkpointed``: its checkpoint is in place (after a stop decision: the run is over but not finished);
- ``trained``: training returned (step = the last step); test evaluation and files not yet written;
- ``saved``: ``OUT/model`` written, ``metrics.json`` not yet.
"""

from __future__ import annotations

import os
import signal

ENV = "SORA_KILL_AT"
PHASES = ("step", "validated", "checkpoint-write", "checkpointed", "trained", "saved")


def kill_point(phase: str, step: int) -> None:
    """Die here, now, without cleanup, when ``SORA_KILL_AT`` names this point."""
    points = os.environ.get(ENV)
    if points and f"{phase}@{step}" in points.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
