"""Unsafe and unusable files: malicious pickles, paths out of a model folder, weights of the wrong shape,
binary recipes, malformed ``--set`` values, out-of-range batch tensors (issue 19, defects 6, 7 and 8).

Every case runs the real command in-process and must end with exit 2 and one ``error:`` line that says
what was refused and why; nothing may run, be read from outside the folder, or be written.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from sora.interop import export_hf
from sora.models import build_model, save_model
from tests.helpers import Answer, fuzz, run_cli, tiny

pytestmark = pytest.mark.filterwarnings("ignore")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the a film is good bad dull plot slow".split()]
VOCAB += [f"##x{i}" for i in range(40 - len(VOCAB))]


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory) -> Path:
    """A Hugging Face BERT folder (written by ``sora hf export``, so no transformers is needed) with a vocab.txt."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("unsafe")
    config = tiny(
        "encoder",
        norm_position="post",
        embed_norm=True,
        vocab_size=len(VOCAB),
        encoder={"n_layers": 2, "n_heads": 4, "d_ff": 64},
    )
    save_model(build_model(config), root / "sora")
    export_hf(root / "sora", root / "hf", verify=False)
    (root / "hf" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return root / "hf"


@pytest.fixture
def case(tmp_path, hf_bert) -> Path:
    """A fresh copy of the Hugging Face folder, with an ``outside`` folder beside it."""
    (tmp_path / "outside").mkdir()
    return Path(shutil.copytree(hf_bert, tmp_path / "hf"))


def imports(capsys, folder: Path) -> Answer:
    out = folder.parent / "imported"
    answer = run_cli(capsys, "hf", "import", folder, "--out", out, "--no-verify")
    assert answer.code != 0 or out.is_dir()
    return answer


# ------------------------------------------------------------------------------- malicious pickles


class Payload:
    """Pickles as a call of ``fn(*args)``: what a malicious pytorch_model.bin asks the unpickler to run."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _calls(canary: Path) -> dict:
    return {
        "os.system": (os.system, (f"touch {canary}",)),
        "eval": (eval, (f"open({str(canary)!r}, 'w')",)),
        "exec": (exec, (f"open({str(canary)!r}, 'w')",)),
        "subprocess.call": (subprocess.call, (["touch", canary],)),
        "open": (open, (canary, "w")),
        "object": (object, ()),
    }


def _save(obj, path: Path, form: str) -> None:
    if form in ("zip", "legacy"):
        torch.save(obj, path, _use_new_zipfile_serialization=form == "zip")
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=int(form[-1]))


@fuzz(24)
@given(
    call=st.sampled_from(["os.system", "eval", "exec", "subprocess.call", "open", "object"]),
    form=st.sampled_from(["zip", "legacy", "pickle2", "pickle4"]),
    depth=st.integers(0, 2),
)
def test_a_malicious_pickle_is_refused_saying_what_it_asked_for(hf_bert, tmp_path_factory, capsys, call, form, depth):
    folder = Path(shutil.copytree(hf_bert, tmp_path_factory.mktemp("pickle") / "hf"))
    canary = folder.parent / "CANARY"
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    payload = Payload(*_calls(canary)[call])
    for _ in range(depth):
        payload = [payload]
    _save({**state, "evil": payload}, folder / "pytorch_model.bin", form)
    line = imports(capsys, folder).error()
    assert not canary.exists()
    assert "pytorch_model.bin: refused: unsupported " in line
    assert "weights_only" not in line and "Re-running" not in line and "trust" not in line
    if form in ("zip", "legacy"):
        assert "GLOBAL" in line
    assert not (folder.parent / "imported").exists()


# ------------------------------------------------------------------------------- paths out of the folder


def test_a_vocab_txt_link_out_of_the_folder_is_refused(case, capsys):
    secret = case.parent / "outside" / "secrets.txt"
    secret.write_text("\n".join(VOCAB) + "\nhunter2\n")
    (case / "vocab.txt").unlink()
    (case / "vocab.txt").symlink_to(secret)
    line = imports(capsys, case).error()
    assert f"{case / 'vocab.txt'}: is a link to {secret}, outside the model folder" in line
    assert not (case.parent / "imported").exists()


def test_a_vocab_txt_inside_the_folder_is_used(case, capsys):
    code, out, err = imports(capsys, case)
    assert code == 0, err
    assert "tokenizer: from vocab.txt" in " ".join(out.split())


@fuzz(12)
@given(
    form=st.sampled_from(["../{n}", "{abs}", "sub/../../{n}", "link"]),
    name=st.text("abcxyz_", min_size=1, max_size=8).map(lambda s: s + ".safetensors"),
)
def test_a_shard_outside_the_folder_is_refused(hf_bert, tmp_path_factory, capsys, form, name):
    folder = Path(shutil.copytree(hf_bert, tmp_path_factory.mktemp("shard") / "hf"))
    outside = folder.parent / name  # a valid shard: reading it would succeed, so only refusing passes
    shutil.move(folder / "model.safetensors", outside)
    entry = form.format(n=name, abs=outside)
    if form == "link":
        entry = "linked.safetensors"
        (folder / entry).symlink_to(outside)
    tensors = load_file(str(outside))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: entry for k in tensors}}))
    line = imports(capsys, folder).error()
    assert "outside the model folder" in line and str(folder) in line


def test_a_shard_in_a_subfolder_is_read(case, capsys):
    (case / "shards").mkdir()
    shutil.move(case / "model.safetensors", case / "shards" / "part.safetensors")
    names = load_file(str(case / "shards" / "part.safetensors"))
    (case / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: "shards/part.safetensors" for k in names}})
    )
    code, _, err = imports(capsys, case)
    assert code == 0, err


def test_the_hugging_face_cache_layout_links_into_its_blobs(case, capsys):
    """``snapshots/REV/*`` are links to ``../../blobs/*``: the one layout allowed to point out of its folder."""
    repo = case.parent / "models--org--tiny"
    snapshot = repo / "snapshots" / "0123abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for path in case.iterdir():
        shutil.copyfile(path, repo / "blobs" / f"blob-{path.name}")
        (snapshot / path.name).symlink_to(Path("../../blobs") / f"blob-{path.name}")
    code, _, err = imports(capsys, snapshot)
    assert code == 0, err


# ------------------------------------------------------------------------------- weights that do not match


@fuzz(10)
@given(
    key=st.sampled_from(["intermediate_size", "vocab_size", "max_position_embeddings"]),
    delta=st.sampled_from([-3, 5, 16]),
)
def test_a_weight_mismatch_names_the_tensor_and_both_shapes(hf_bert, tmp_path_factory, capsys, key, delta):
    folder = Path(shutil.copytree(hf_bert, tmp_path_factory.mktemp("mismatch") / "hf"))
    config = json.loads((folder / "config.json").read_text())
    config[key] += delta
    (folder / "config.json").write_text(json.dumps(config))
    line = imports(capsys, folder).error()
    assert "does not match config.json: tensor '" in line, line
    shapes = [part.split(")")[0] for part in line.split("(")[1:] if part[:1].isdigit()]
    assert len(shapes) == 2 and shapes[0] != shapes[1], line


def test_a_sora_folder_whose_config_was_changed_names_the_tensor(tmp_path, capsys):
    save_model(build_model(tiny()), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["encoder"]["d_ff"] = 48
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    line = run_cli(capsys, "inspect", tmp_path / "m").error()
    assert re.search(
        r"model.safetensors: does not match config.json: tensor 'layers\.0\.ffn\.[\w.]+' is float32 "
        r"\(64,( 32)?\) in the file, float32 \(48,( 32)?\) in the model config.json describes",
        line,
    ), line


# ------------------------------------------------------------------------------- files that are not text


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@fuzz(20)
@given(
    data=st.binary(min_size=1, max_size=200).filter(_not_utf8),
    command=st.sampled_from(["run", "train", "inspect", "eval"]),
)
def test_a_binary_recipe_is_one_line(tmp_path_factory, capsys, data, command):
    root = tmp_path_factory.mktemp("binary")
    recipe = root / "recipe.yaml"
    recipe.write_bytes(data)
    args = {
        "run": ["run", recipe, "--out", root / "out"],
        "train": ["train", recipe, "--out", root / "out"],
        "inspect": ["inspect", recipe],
        "eval": ["eval", root / "model", "--data", recipe],
    }[command]
    if command == "eval":
        save_model(build_model(tiny()), root / "model")
    line = run_cli(capsys, *args).error()
    assert f"{recipe}: not a UTF-8 text config file (byte " in line
    assert not (root / "out").exists()


def _not_yaml(text: str) -> bool:
    try:
        yaml.safe_load(text)
    except Exception:  # noqa: BLE001  whatever the parser raises
        return True
    return False


@fuzz(20)
@given(
    value=st.one_of(
        st.sampled_from(
            [
                "[1",
                "{a: 1",
                "a: b: c",
                "!!int x",
                "2001-13-01",
                "*nope",
                "'open",
                "@x",
                "!!timestamp x",
                "a\tb: c",
                "? [a]\n: b",
            ]
        ),
        st.text(min_size=1, max_size=12),
    ).filter(_not_yaml)
)
def test_a_malformed_set_value_is_one_line(tmp_path_factory, capsys, value):
    root = tmp_path_factory.mktemp("set")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "model": tiny().model_dump(mode="json")}))
    line = run_cli(capsys, "run", recipe, "--out", root / "out", "--set", f"train.lr={value}").error()
    assert "train.lr=" in line and "not valid YAML" in line
    assert not (root / "out").exists()


# ------------------------------------------------------------------------------- analyze --data x.safetensors


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("analyze") / "model"
    save_model(build_model(tiny(max_len=16)), folder)  # vocabulary 50, 3 classes, 16 positions
    return folder


def _batch(n: int = 4, length: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "inputs": torch.randint(1, 50, (n, length), generator=g),
        "valid": torch.ones(n, length, dtype=torch.bool),
        "labels": torch.randint(0, 3, (n,), generator=g),
    }


BAD_BATCHES = {
    "id past the vocabulary": lambda b, v: {**b, "inputs": b["inputs"].index_fill(1, torch.tensor([0]), 50 + v)},
    "negative id": lambda b, v: {**b, "inputs": b["inputs"].index_fill(1, torch.tensor([0]), -1 - v)},
    "label past the classes": lambda b, v: {**b, "labels": b["labels"].fill_(3 + v)},
    "negative label": lambda b, v: {**b, "labels": b["labels"].fill_(-1 - v)},
    "rows longer than max_len": lambda b, v: {**_batch(length=17 + v)},
    "float ids": lambda b, v: {**b, "inputs": b["inputs"].float()},
    "mask of another shape": lambda b, v: {**b, "valid": torch.ones(4, 8 + 1 + v, dtype=torch.bool)},
    "mask that is not 0/1": lambda b, v: {**b, "valid": torch.full((4, 8), 2 + v)},
    "labels per position": lambda b, v: {**b, "labels": torch.zeros(4, 8, dtype=torch.long)},
    "no labels": lambda b, v: {k: t for k, t in b.items() if k != "labels"},
}


@fuzz(20)
@given(bad=st.sampled_from(sorted(BAD_BATCHES)), v=st.integers(0, 1000))
def test_analyze_refuses_batch_tensors_the_model_cannot_take(text_model, tmp_path_factory, capsys, bad, v):
    root = tmp_path_factory.mktemp("batches")
    save_file(BAD_BATCHES[bad](_batch(), v), str(root / "x.safetensors"))
    line = run_cli(
        capsys, "analyze", text_model, "--data", root / "x.safetensors", "--out", root / "an", "--methods", "gradient"
    ).error()
    assert f"{root / 'x.safetensors'}: " in line
    assert not (root / "an").exists()


def test_analyze_takes_batch_tensors_in_range_as_ints(text_model, tmp_path, capsys):
    batch = {**_batch(), "inputs": _batch()["inputs"].int(), "valid": torch.ones(4, 8, dtype=torch.uint8)}
    save_file(batch, str(tmp_path / "x.safetensors"))
    code, _, err = run_cli(
        capsys,
        "analyze",
        text_model,
        "--data",
        tmp_path / "x.safetensors",
        "--out",
        tmp_path / "an",
        "--methods",
        "gradient",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "an" / "analysis.json").read_text())["data"]["examples"] == 4
