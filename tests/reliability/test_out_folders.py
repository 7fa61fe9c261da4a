"""``--out`` is the user's: every command writes a new folder, replaces its own kind, or refuses with one line.

Hypothesis builds what ``--out`` holds before a command runs: nothing, an empty folder, a file, a link
to a folder or a file elsewhere, or a real output of each kind Sora writes (model folder, Hugging Face
export, analysis, compression report, training run, checkpoint, a Hugging Face folder Sora did not
write), with foreign things added (a file, a hidden file, a nested folder, a link out, a file inside
one of Sora's subfolders). Each state meets every command, with and without ``--force`` (and
``--resume`` for runs). The answer must be exit 0 with the new output in place, or exit 2 with one
``error: --out ...`` line and ``--out`` untouched, and nothing outside ``--out`` may change: not the
files links point to, and no staging folder left beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sora.atomic import clean_stale, staged_dir
from sora.errors import SoraError
from sora.interop.exporter import is_sora_export
from sora.models import load_model
from sora.outdir import claim_out
from tests.helpers import fuzz, run_cli, run_cli_within, snapshot
from tests.reliability.out_world import KIND_OF, World, world  # noqa: F401  (world: a fixture)

BASES = (
    "missing",
    "empty",
    "file",
    "link_to_dir",
    "link_to_file",
    "model",
    "hf",
    "analysis",
    "compress",
    "run",
    "checkpoint",
    "hf_foreign",
)
EXTRAS = ("notes.txt", ".DS_Store", "nested/notes.txt", "link_out", "inner")
EXAMPLES = {
    "prune": 30,
    "quantize": 15,
    "hf import": 15,
    "hf export": 15,
    "analyze": 6,
    "compress": 5,
    "train": 10,
    "run": 6,
}


states = st.fixed_dictionaries(
    {
        "base": st.sampled_from(BASES),
        "extras": st.lists(st.sampled_from(EXTRAS), max_size=2, unique=True),
        "force": st.booleans(),
        "resume": st.booleans(),
    }
)


def make_state(place: Path, world: World, base: str, extras: list[str]) -> Path:
    """Lay out ``place/out`` as ``base`` plus ``extras``, and ``place/outside`` (what links point to)."""
    outside = place / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "precious.txt").write_text("the user's\n")
    (outside / "precious.txt").write_text("the user's too\n")
    out = place / "out"
    if base == "empty":
        out.mkdir()
    elif base == "file":
        out.write_text("a file the user wrote\n")
    elif base == "link_to_dir":
        out.symlink_to(outside / "dir", target_is_directory=True)
    elif base == "link_to_file":
        out.symlink_to(outside / "precious.txt")
    elif base != "missing":
        shutil.copytree(world.samples[base], out, symlinks=True)
    if is_folder(base):
        for extra in extras:
            _add(out, extra, outside)
    return out


def _add(out: Path, extra: str, outside: Path) -> None:
    if extra == "link_out":
        (out / "link_out").symlink_to(outside / "dir", target_is_directory=True)
        return
    if extra == "inner":  # a foreign file inside one of Sora's own subfolders, or at the top
        inner = next((p for p in sorted(out.iterdir()) if p.is_dir() and not p.is_symlink()), out)
        extra = str((inner / "notes_inner.txt").relative_to(out))
    path = out / extra
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("the user's\n")


def is_folder(base: str) -> bool:
    """Whether ``--out`` is a real folder in state ``base`` (extras are added only to one)."""
    return base not in ("missing", "file", "link_to_dir", "link_to_file")


def expected(kind: str, base: str, extras: list[str], force: bool, resume: bool) -> bool | None:
    """Whether the command may write ``--out`` (None: either answer is right, the check is elsewhere)."""
    foreign = bool(extras) and is_folder(base)
    if force:
        return not (resume and kind == "run")  # continue the run, or start it over: not both
    if kind != "run":
        return not foreign and base in ("missing", "empty", kind)
    if resume and base in ("missing", "empty") and not foreign:
        return None  # accepted here; the trainer then says whether there is a run to resume
    if resume and base == "run":
        return "inner" not in extras  # a run, its Sora-written subfolders intact: training touches nothing else
    return not foreign and base in ("missing", "empty")


def valid_output(kind: str, out: Path) -> bool:
    assert out.is_dir() and not out.is_symlink()
    if kind == "model":
        return load_model(out) is not None
    if kind == "hf":
        return is_sora_export(out)
    if kind == "analysis":
        return "baseline" in json.loads((out / "analysis.json").read_text())
    if kind == "compress":
        return load_model(out / "pruned") is not None and (out / "report.json").is_file()
    return load_model(out / "model") is not None and (out / "metrics.json").is_file()


@pytest.mark.parametrize("command", list(EXAMPLES))
def test_every_command_writes_replaces_its_own_or_refuses(world, tmp_path, capsys, command):
    kind = KIND_OF[command]
    seen = {True: 0, False: 0}

    @fuzz(EXAMPLES[command])
    @given(state=states)
    def check(state):
        place = Path(tempfile.mkdtemp(dir=tmp_path))
        out = make_state(place, world, state["base"], state["extras"])
        before_out = snapshot(place)
        flags = ["--force"] * state["force"] + ["--resume"] * (state["resume"] and kind == "run")
        answer = run_cli_within(capsys, place, out, *world.command(command), "--out", out, *flags)
        want = expected(kind, state["base"], state["extras"], state["force"], state["resume"])
        if answer.code == 0:
            assert want is not False, f"{state}: accepted\n{answer.stderr}"
            assert valid_output(KIND_OF[command], out)
            for extra in ("notes.txt", ".DS_Store", "nested/notes.txt") if not state["force"] else ():
                if extra in state["extras"] and is_folder(state["base"]):
                    assert (out / extra).read_text() == "the user's\n"  # a resumed run leaves them alone
        else:
            assert answer.code == 2 and want is not True, f"{state}: refused with {answer.code}\n{answer.stderr}"
            assert answer.error().startswith("error: --out") or want is None, answer.stderr
            assert snapshot(place) == before_out, "a refused command changed --out"
        seen[answer.code == 0] += 1
        shutil.rmtree(place)

    check()
    assert seen[True] and seen[False], seen  # the examples reach both answers


@fuzz(300)
@given(kind=st.sampled_from(["model", "hf", "analysis", "compress", "run"]), state=states)
def test_the_ownership_rule_on_generated_folders(world, tmp_path, kind, state):
    """The rule alone, on many more states: claim, then write the way every command writes."""
    place = Path(tempfile.mkdtemp(dir=tmp_path))
    out = make_state(place, world, state["base"], state["extras"])
    before_out, before_rest = snapshot(place), snapshot(place, skip=out)
    want = expected(kind, state["base"], state["extras"], state["force"], state["resume"])
    try:
        claim_out(out, kind, force=state["force"], resume=state["resume"] and kind == "run", say=lambda _: None)
    except SoraError as e:
        assert want is not True, f"{state}: {e}"
        assert str(e).startswith(f"--out {out}: ") and "\n" not in str(e)
        assert snapshot(place) == before_out
    else:
        assert want is not False, state
        if kind != "run":
            with staged_dir(out) as tmp:
                (tmp / "written").write_text("new")
            assert sorted(os.listdir(out)) == ["written"]
        elif state["force"]:
            assert not out.exists() or (out.is_dir() and not out.is_symlink() and not os.listdir(out))
    assert snapshot(place, skip=out) == before_rest
    shutil.rmtree(place)


def test_a_command_never_replaces_what_it_reads(world, tmp_path, capsys):
    shutil.copytree(world.model, tmp_path / "run" / "model")
    for out in (tmp_path / "run", tmp_path / "run" / "model", tmp_path / "run" / "model" / "inner"):
        answer = run_cli(
            capsys, "prune", tmp_path / "run" / "model", "--heads", "layers.0.attn.head.1", "--out", out, "--force"
        )
        assert "which this command reads" in answer.error()
    assert load_model(tmp_path / "run" / "model") is not None
    answer = run_cli(capsys, "train", world.recipe, "--out", world.recipe, "--force")
    assert "which this command reads" in answer.error() and world.recipe.is_file()
    (tmp_path / "file").write_text("x")
    answer = run_cli(capsys, "quantize", world.model, "--out", tmp_path / "file" / "q")
    assert "is a file, not a folder" in answer.error()


def test_replacing_its_own_output_is_said(world, tmp_path, capsys):
    shutil.copytree(world.samples["model"], tmp_path / "p")
    answer = run_cli(capsys, *world.command("prune"), "--out", tmp_path / "p")
    assert answer.code == 0
    assert f"--out {tmp_path / 'p'}: replacing a model folder Sora wrote there earlier" in answer.err


def test_a_used_run_folder_needs_resume_or_force(world, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", world.recipe, "--out", out).code == 0
    first = json.loads((out / "run.json").read_text())["run_id"]
    (out / "notes.txt").write_text("mine")
    assert (
        "holds a training run already; pass --resume to continue it, or --force to start over"
        in run_cli(capsys, "train", world.recipe, "--out", out).error()
    )
    assert run_cli(capsys, "train", world.recipe, "--out", out, "--resume").code == 0
    assert json.loads((out / "run.json").read_text())["run_id"] == first and (out / "notes.txt").is_file()
    assert run_cli(capsys, "run", world.recipe, "--out", out, "--force").code == 0
    assert json.loads((out / "run.json").read_text())["run_id"] != first and not (out / "notes.txt").exists()


def test_a_failed_run_leaves_no_folder_it_created(world, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(world.recipe.read_text().replace(str(world.root / "reviews.csv"), str(tmp_path / "gone.csv")))
    for command in ("run", "train"):
        run_cli(capsys, command, bad, "--out", tmp_path / "new" / "deeper" / "run").error()
        assert sorted(os.listdir(tmp_path)) == ["bad.yaml"]
    (tmp_path / "mine").mkdir()
    assert run_cli(capsys, "run", bad, "--out", tmp_path / "mine").code == 2
    assert (tmp_path / "mine").is_dir()  # the user's folder stays, even empty


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_leftovers_of_killed_saves_are_cleaned_on_the_next_run(world, tmp_path, capsys):
    pid = dead_pid()
    stale = [f".p.sora-tmp-{pid}-0123abcd", f".p.old-{pid}", ".p.abcd1234"]  # this version's and earlier ones'
    kept = [f".p.sora-tmp-{os.getppid()}-0123abcd", ".p.backup12", f".q.sora-tmp-{pid}-0123abcd"]
    for name in stale + kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"partial")
    os.chmod(tmp_path / ".p.abcd1234", 0o700)  # what tempfile.mkdtemp made
    os.chmod(tmp_path / ".p.backup12", 0o755)  # a folder of the user's that happens to look alike
    shutil.copytree(world.samples["model"], tmp_path / "p")  # with it in place, a folder set aside is not put back
    assert run_cli(capsys, *world.command("prune"), "--out", tmp_path / "p").code == 0
    assert sorted(os.listdir(tmp_path)) == sorted(["p", *kept])


def test_a_run_cleans_its_own_leftovers_on_resume(world, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", world.recipe, "--out", out).code == 0
    pid = dead_pid()
    for leftover in (
        out / f".model.sora-tmp-{pid}-0123abcd",
        out / "checkpoints" / ".staging-abcd1234",
        out / "checkpoints" / f".step-9.sora-tmp-{pid}-0123abcd",
    ):
        leftover.mkdir()
        os.chmod(leftover, 0o700)
    assert run_cli(capsys, "train", world.recipe, "--out", out, "--resume").code == 0
    assert not [p for p in [*out.iterdir(), *(out / "checkpoints").iterdir()] if p.name.startswith(".")]


def test_staged_dir_removes_everything_on_any_exception(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "old").write_text("previous")
    for exc in (RuntimeError("disk full"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with staged_dir(tmp_path / "new" / "deep" / "x") as tmp:
                (tmp / "half").write_text("half")
                raise exc
        with pytest.raises(type(exc)):
            with staged_dir(target) as tmp:
                raise exc
        assert sorted(os.listdir(tmp_path)) == ["m"] and (target / "old").read_text() == "previous"


def test_a_replaced_folder_is_put_back_when_a_kill_left_it_aside(tmp_path):
    pid = dead_pid()
    aside = tmp_path / f".m.sora-old-{pid}-0123abcd"
    aside.mkdir()
    (aside / "model.safetensors").write_text("previous")
    (tmp_path / f".m.sora-tmp-{pid}-89abcdef").mkdir()
    assert len(clean_stale(tmp_path, "m")) == 2
    assert os.listdir(tmp_path) == ["m"] and (tmp_path / "m" / "model.safetensors").read_text() == "previous"


def test_a_staging_folder_gets_the_users_permissions(tmp_path):
    with staged_dir(tmp_path / "m") as tmp:
        (tmp / "f").write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o777 & ~umask
