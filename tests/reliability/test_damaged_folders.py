"""Damaged model folders through every command that reads one (issue 19, defect 4).

Hypothesis damages one file of a tiny saved model folder at a time: truncated at a random offset,
replaced with garbage bytes or with JSON of the wrong shape, one value given the wrong type, deleted,
replaced by a folder, by a link to a (valid) copy outside the folder, or by the same file of another
model. Each command then runs in-process and must answer exit 0 with the result it gives on the
undamaged folder, or exit 2 with one ``error:`` line naming the damaged file; an exception escaping
the command fails the test, and so does any change to a file outside the command's ``--out``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from sora.compress import QuantizeConfig, quantize_model, save_quantized
from sora.configio import load
from sora.data import DataConfig, prepare_data
from sora.models import build_model, load_model, save_model
from sora.models.folder import CONFIG, META, TOKENIZER, WEIGHTS
from tests.helpers import FUZZ_SCALE, fuzz, run_cli, run_cli_within, save_tiny, tiny, write_reviews

pytestmark = pytest.mark.filterwarnings("ignore")

FILES = (CONFIG, WEIGHTS, TOKENIZER, META)
KINDS = ("truncate", "garbage", "wrong_json", "retype", "delete", "folder", "link_out", "foreign")
JSON_VALUES = ([], None, "text", 7, {}, True, [1, "a"])


@dataclass(frozen=True)
class Damage:
    file: str
    kind: str
    at: float  # where to truncate, as a fraction of the file; which key to retype
    junk: bytes
    value: object  # a JSON value of the wrong shape

    def apply(self, folder: Path, outside: Path, foreign: Path) -> None:
        path = folder / self.file
        original = path.read_bytes()
        if self.kind == "truncate":
            path.write_bytes(original[: int(self.at * len(original))])
        elif self.kind == "garbage":
            path.write_bytes(self.junk)
        elif self.kind == "wrong_json":
            path.write_text(json.dumps(self.value))
        elif self.kind == "retype":
            path.write_bytes(_retyped(original, self.at, self.value))
        elif self.kind == "delete":
            path.unlink()
        elif self.kind == "folder":
            path.unlink()
            path.mkdir()
        elif self.kind == "link_out":  # a valid copy, outside: reading it would be the bug
            (outside / self.file).write_bytes(original)
            path.unlink()
            path.symlink_to(outside / self.file)
        elif self.kind == "foreign":  # the same file of another model
            shutil.copyfile(foreign / self.file, path)


def _retyped(original: bytes, at: float, value) -> bytes:
    """The file with one top-level JSON value replaced: a JSON file's, or a safetensors file's header's."""
    safetensors = not original.startswith(b"{")
    n = int.from_bytes(original[:8], "little") if safetensors else len(original)
    data = json.loads(original[8 : 8 + n] if safetensors else original)
    key = sorted(data)[int(at * len(data))]
    text = json.dumps({**data, key: value}).encode()
    if not safetensors:
        return text
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
    return len(text).to_bytes(8, "little") + text + original[8 + n :]


damages = st.builds(
    Damage,
    file=st.sampled_from(FILES),
    kind=st.sampled_from(KINDS),
    at=st.floats(0, 1, exclude_max=True),
    junk=st.binary(max_size=64),
    value=st.sampled_from(JSON_VALUES),
)


# ------------------------------------------------------------------------------- the tiny world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A BERT-shaped classifier (``model``), its int8 version (``int8``), a decoder LM (``lm``), each with its
    tokenizer, their data, and ``foreign``: a model of other sizes, labels and vocabulary whose files can be
    swapped in."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("damaged")
    words = {"pos": "good great fine film".split(), "neg": "bad awful dull film".split()}
    write_reviews(root / "reviews.csv", words, 48)
    (root / "data.yaml").write_text(
        f"source: {root / 'reviews.csv'}\ncolumns: {{text: text, label: label}}\n"
        "tokenizer: {kind: char}\nmax_len: 64\n"
    )
    data = prepare_data(load(DataConfig, root / "data.yaml"))
    save_tiny(root / "model", data, norm_position="post", embed_norm=True, pooler=True)
    int8 = quantize_model(load_model(root / "model"), QuantizeConfig(min_weights=0, min_side=0))
    save_quantized(int8, root / "int8", tokenizer=data.tokenizer, meta={"labels": data.labels})
    lm = tiny("decoder_lm", vocab_size=data.vocab_size, bos_id=1, eos_id=2)
    save_model(build_model(lm).eval(), root / "lm", tokenizer=data.tokenizer, meta={"task": "lm"})
    write_reviews(root / "other.csv", {"A": ["XYZ 123"], "B": ["QRS 456"], "C": ["JKL 789"]}, 12, seed=1)
    other = prepare_data(
        {
            "source": str(root / "other.csv"),
            "columns": {"text": "text", "label": "label"},
            "tokenizer": {"kind": "char"},
        }
    )
    assert other.vocab_size > data.vocab_size
    assert len(other.labels) == 3
    save_tiny(root / "foreign", other, d_model=16, encoder={"n_layers": 1, "n_heads": 2, "d_ff": 8})
    return root


# ------------------------------------------------------------------------------- the commands


def _tensors(path: Path) -> dict:
    return {k: v.tolist() for k, v in load_file(str(path)).items()}


@dataclass(frozen=True)
class Command:
    folder: str  # which model of the world it reads: model, int8 or lm
    args: Callable[[Path, Path, Path], list]  # (world, model folder, out) -> arguments
    result: Callable[[Path, str], object]  # (out, stdout) -> what must equal the undamaged run's


COMMANDS = {
    "inspect": Command("model", lambda w, m, o: ["inspect", m, "--json"], lambda o, out: json.loads(out)),
    "eval": Command(
        "model",
        lambda w, m, o: ["eval", m, "--data", w / "data.yaml", "--split", "validation", "--json"],
        lambda o, out: json.loads(out)["metrics"],
    ),
    "inspect int8": Command("int8", lambda w, m, o: ["inspect", m, "--json"], lambda o, out: json.loads(out)),
    "eval int8": Command(
        "int8",
        lambda w, m, o: ["eval", m, "--data", w / "data.yaml", "--split", "validation", "--json"],
        lambda o, out: json.loads(out)["metrics"],
    ),
    "generate": Command(
        "lm",
        lambda w, m, o: ["generate", m, "--prompt", "good film", "--max-new-tokens", "6", "--seed", "0"],
        lambda o, out: out,
    ),
    "analyze": Command(
        "model",
        lambda w, m, o: [
            "analyze",
            m,
            "--data",
            w / "data.yaml",
            "--out",
            o,
            "--methods",
            "gradient",
            "--max-batches",
            "1",
        ],
        lambda o, out: json.loads((o / "analysis.json").read_text())["baseline"],
    ),
    "prune": Command(
        "model",
        lambda w, m, o: ["prune", m, "--out", o, "--heads", "layers.0.attn.head.1"],
        lambda o, out: _tensors(o / WEIGHTS),
    ),
    "quantize": Command(
        "model",
        lambda w, m, o: ["quantize", m, "--out", o, "--min-weights", "0", "--min-side", "0"],
        lambda o, out: _tensors(o / WEIGHTS),
    ),
    "compress": Command(
        "model",
        lambda w, m, o: [
            "compress",
            m,
            "--data",
            w / "data.yaml",
            "--out",
            o,
            "--heads",
            "0.5",
            "--set",
            "latency_repeats=1",
        ],
        lambda o, out: {
            k: (v["metrics"], v["parameters"])
            for k, v in json.loads((o / "report.json").read_text())["variants"].items()
        },
    ),
    "hf export": Command(
        "model", lambda w, m, o: ["hf", "export", m, "--out", o, "--no-verify"], lambda o, out: _tensors(o / WEIGHTS)
    ),
    "run with init": Command(
        "model", lambda w, m, o: ["run", _init_recipe(w, m), "--out", o], lambda o, out: _tensors(o / "model" / WEIGHTS)
    ),
}
# Examples per command: fewer where a command that succeeds takes seconds (analyze draws its figures).
EXAMPLES = {
    "inspect": 40,
    "eval": 30,
    "inspect int8": 20,
    "eval int8": 20,
    "generate": 30,
    "analyze": 10,
    "prune": 30,
    "quantize": 30,
    "compress": 12,
    "hf export": 30,
    "run with init": 10,
}


def _init_recipe(world: Path, model_dir: Path) -> Path:
    """A recipe that fine-tunes the model folder for two steps (written beside it)."""
    recipe = {
        "name": "init",
        "init": str(model_dir),
        "model": json.loads((world / "model" / CONFIG).read_text()),
        "data": {"source": str(world / "reviews.csv"), "columns": {"text": "text", "label": "label"}, "max_len": 64},
        "train": {"max_steps": 2, "batch_size": 16, "quiet": True, "threads": 1},
    }
    path = model_dir.parent / "recipe.yaml"
    path.write_text(json.dumps(recipe))
    return path


# ------------------------------------------------------------------------------- running and checking


def _reference(world: Path, name: str, capsys, cache: dict) -> object:
    """The command's result on the undamaged folder (computed once per command)."""
    if name not in cache:
        with tempfile.TemporaryDirectory(dir=world) as tmp:
            command = COMMANDS[name]
            model = Path(shutil.copytree(world / command.folder, Path(tmp) / "case" / "model"))
            answer = run_cli(capsys, *command.args(world, model, Path(tmp) / "out"))
            assert answer.code == 0, answer.stderr
            cache[name] = command.result(Path(tmp) / "out", answer.out)
    return cache[name]


@pytest.fixture
def sora_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SORA_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_damaged_folder_is_one_clear_line_or_the_undamaged_result(world, name, capsys, sora_home, record_property):
    command, reference = COMMANDS[name], {}
    seen = {"cases": 0, "exit 0": 0, "exit 2": 0}

    @fuzz(EXAMPLES[name])
    @given(damage=damages)
    def check(damage: Damage) -> None:
        with tempfile.TemporaryDirectory(dir=world) as tmp:
            case, outside, out = Path(tmp) / "case", Path(tmp) / "outside", Path(tmp) / "out"
            outside.mkdir()
            model = Path(shutil.copytree(world / command.folder, case / "model"))
            damage.apply(model, outside, world / "foreign")
            answer = run_cli_within(capsys, world, out, *command.args(world, model, out), times=True)
            seen["cases"] += 1
            seen[f"exit {answer.code}"] = seen.get(f"exit {answer.code}", 0) + 1
            if answer.code == 0:
                result = command.result(out, answer.out)
                assert result == _reference(world, name, capsys, reference), f"{damage}: exit 0 with another result"
            else:
                line = answer.error()
                assert str(case) in line or damage.file in line, f"{damage}: the error names no file: {line}"

    check()
    print(f"{name}: {seen}")
    record_property("generated_cases", seen)
    assert seen["cases"] == EXAMPLES[name] * FUZZ_SCALE and seen["exit 2"] > 0


def test_an_empty_split_is_called_empty_not_missing(world, capsys, sora_home):
    """'no split test in austen (splits: train, validation, test)': the split was there, held out nothing."""
    err = run_cli(capsys, "eval", world / "model", "--data", world / "data.yaml", "--set", "split.test=0").error()
    assert "the 'test' split of " in err and "is empty (splits: train " in err
    assert "its split settings hold out test: 0; try --split validation" in err
