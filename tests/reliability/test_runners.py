"""The checks every reliability test leans on: ``Answer.error`` (one ``error:`` line, no traceback) and
``snapshot`` (what changed in a tree) must themselves be able to fail."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sora.models import build_model, save_model
from tests.helpers import Answer, fuzz, run_cli, run_cli_within, snapshot, tiny

HARMLESS = ["warning: took a guess", "some output", "  a wrapped line"]
FAULTS = ["Traceback (most recent call last):", "error: and another"]
LINES = st.lists(st.sampled_from(HARMLESS * 6 + FAULTS), max_size=2)  # mostly harmless: both answers are common


@fuzz(200)
@given(
    code=st.sampled_from([2, 2, 2, 0, 1]),
    before=LINES,
    error=st.sampled_from([True, True, True, False]),
    after=LINES,
    allowed=st.integers(1, 3),
)
def test_error_accepts_exactly_one_error_line_and_no_traceback(code, before, error, after, allowed):
    """Accepted exactly when: exit 2, no traceback, one ``error:`` line and at most ``allowed`` lines from it."""
    lines = before + ["error: bad value"] * error + after
    answer = Answer(code, "", "".join(line + "\n" for line in lines))
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    good = (
        code == 2
        and not any("Traceback" in line for line in lines)
        and len(starts) == 1
        and len(lines) - starts[0] <= allowed
    )
    if good:
        assert answer.error(allowed) == "\n".join(lines[starts[0] :])
    else:
        with pytest.raises(AssertionError):
            answer.error(allowed)


def test_an_answer_unpacks_as_code_out_and_folded_err(tmp_path, capsys):
    answer = run_cli(capsys, "inspect", tmp_path / "missing")
    code, out, err = answer
    assert (code, out, err) == (2, answer.out, " ".join(answer.stderr.split()))
    assert str(tmp_path / "missing") in answer.error()


def _tree(root):
    (root / "out").mkdir(parents=True)
    (root / "kept").mkdir()
    (root / "kept" / "a.txt").write_text("a")
    (root / "link").symlink_to(root / "kept")
    return root


CHANGES = {
    "bytes": lambda r: (r / "kept" / "a.txt").write_text("b"),
    "new file": lambda r: (r / "kept" / "b.txt").write_text("b"),
    "removed": lambda r: (r / "kept" / "a.txt").unlink(),
    "mode": lambda r: os.chmod(r / "kept" / "a.txt", 0o600),
    "link target": lambda r: ((r / "link").unlink(), (r / "link").symlink_to(r / "out")),
    "new folder": lambda r: (r / "kept" / "sub").mkdir(),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_snapshot_sees_every_change_outside_skip(tmp_path, change):
    root = _tree(tmp_path)
    before = snapshot(root, root / "out")
    (root / "out" / "anything").write_text("inside --out: not looked at")
    assert snapshot(root, root / "out") == before
    CHANGES[change](root)
    assert snapshot(root, root / "out") != before


def test_snapshot_with_times_sees_the_same_bytes_written_again(tmp_path):
    root = _tree(tmp_path)
    before, timed = snapshot(root), snapshot(root, times=True)
    time.sleep(0.01)
    (root / "kept" / "a.txt").write_text("a")
    assert snapshot(root) == before and snapshot(root, times=True) != timed


def test_run_cli_within_fails_a_command_that_writes_outside_out(tmp_path, capsys):
    model = save_model(build_model(tiny()), tmp_path / "m")
    assert run_cli_within(capsys, tmp_path, tmp_path / "q", "quantize", model, "--out", tmp_path / "q").code == 0
    with pytest.raises(AssertionError, match="changed files outside"):
        run_cli_within(capsys, tmp_path, tmp_path / "elsewhere", "quantize", model, "--out", tmp_path / "q2")
