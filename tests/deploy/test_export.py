"""ONNX export: every assembly's graphs match torch, at any batch size and length, pruned or not; int8
states its agreement; what cannot be exported, or does not match, is refused with nothing written.

Each tiny folder is exported once per module (the dynamo exporter takes seconds a graph) and the
tests read those exports; ONNX Runtime is called directly here, not through sora.deploy."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import sora.deploy.export as export_module
import sora.deploy.parity as parity_module
from sora.compress import quantize_model, save_quantized
from sora.deploy import export_onnx, is_export_dir, read_export
from sora.errors import SoraError
from sora.models import build_model, load_config, load_model, load_tokenizer
from tests.deploy import export_folders as make
from tests.helpers import tiny

TOLERANCE = 1e-4
PRUNED_LM = {"decoder": {"n_layers": 3, "n_heads": [0, 4, 2], "d_ff": [64, 0, 16]}, "head_dim": 8, "position": "rotary"}
PRUNED_AUDIO = {"encoder": {"n_layers": 2, "n_heads": [2, 0], "d_ff": [32, 8]}, "position": "sinusoidal"}
TRANSLATOR = {
    "decoder": {"n_layers": 2, "n_heads": [4, 2], "d_ff": [64, 32], "cross_heads": [2, 0]},
    "norm_position": "post",
    "position": "sinusoidal",
}
FOLDERS = {  # name -> (how to make the model folder, int8)
    "classifier_int8": (make.trained_classifier, True),
    "vocab_pruned": (make.vocabulary_pruned, False),
    "image": (make.image_classifier, False),
    "audio": (lambda root: make.audio_model(root, "classification", **PRUNED_AUDIO), False),
    "ctc": (lambda root: make.audio_model(root, "ctc"), False),
    "tagger": (lambda root: make.text_tagger(root, position="rotary", norm="rmsnorm"), False),
    "lm": (lambda root: make.char_lm(root, **PRUNED_LM), False),
    "translator": (lambda root: make.translator(root, **TRANSLATOR), False),
}
STEP_LM = ["input_ids", "past_key_1", "past_value_1", "past_key_2", "past_value_2"]  # layer 0 has no heads
PRESENT_LM = ["logits", "present_key_1", "present_value_1", "present_key_2", "present_value_2"]
STEP_S2S = ["input_ids", "memory", "memory_valid", "past_key_0", "past_value_0", "past_key_1", "past_value_1"]
PRESENT_S2S = ["logits", "present_key_0", "present_value_0", "present_key_1", "present_value_1"]
SIGNATURES = {
    "vocab_pruned": {"model": (["input_ids", "valid"], ["logits"])},
    "image": {"model": (["pixels"], ["logits"])},
    "audio": {"model": (["mels", "valid"], ["logits"])},
    "ctc": {"model": (["mels", "valid"], ["logits", "output_valid"])},
    "tagger": {"model": (["input_ids", "valid"], ["logits", "output_valid"])},
    "lm": {"model": (["input_ids"], ["logits"]), "decoder_step": (STEP_LM, PRESENT_LM)},
    "translator": {"encoder": (["input_ids", "valid"], ["memory"]), "decoder_step": (STEP_S2S, PRESENT_S2S)},
}


@dataclass
class Exported:
    model_dir: Path
    folder: Path
    export: dict
    log: list[str]
    cwd: Path  # the working folder it ran in, empty before


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> its Exported, made on first use and shared by the module's tests."""
    root, done = tmp_path_factory.mktemp("export"), {}
    cwd = tmp_path_factory.mktemp("cwd")

    def get(name: str) -> Exported:
        if name not in done:
            make_folder, int8 = FOLDERS[name]
            (root / name).mkdir()
            model_dir, log = make_folder(root / name), []
            here = os.getcwd()
            os.chdir(cwd)  # an export writes nothing outside --out: checked in this empty folder
            try:
                export = export_onnx(model_dir, root / name / "onnx", int8=int8, log=log.append)
            finally:
                os.chdir(here)
            done[name] = Exported(model_dir, root / name / "onnx", export, log, cwd)
        return done[name]

    return get


def run_onnx(folder: Path, graph: str, feeds: dict) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(folder / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    arrays = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in feeds.items()}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, arrays)))


def padded_ids(vocab: int, batch: int, length: int, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, vocab, (batch, length))
    valid = torch.ones(batch, length, dtype=torch.bool)
    valid[-1, length // 2 :] = False  # the last row is padded
    return ids.masked_fill(~valid, pad), valid


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_every_assembly_exports_its_graphs_within_tolerance_of_torch(exported, name):
    e = exported(name)
    assert e.export == read_export(e.folder) and is_export_dir(e.folder) and not is_export_dir(e.model_dir)
    assert e.export["format"] == "onnx" and e.export["precision"] == "fp32" and e.export["opset"] >= 18
    got = {g: (s["inputs"], s["outputs"]) for g, s in e.export["graphs"].items()}
    assert got == SIGNATURES[name]
    assert all((e.folder / s["file"]).is_file() for s in e.export["graphs"].values())
    diffs = e.export["parity"]["fp32_max_abs_diff"]
    assert set(diffs) == set(got) and all(0 <= d <= TOLERANCE for d in diffs.values()), diffs
    inputs = e.export["parity"]["inputs"]
    if name == "tagger":  # no data named: generated inputs, and the log says why
        assert inputs == "generated" and "names no data" in e.log[0]
    else:
        assert inputs.split(" (")[0] in ("validation", "test", "train") and "examples)" in inputs
    meta = json.loads((e.folder / "meta.json").read_text())
    source = e.model_dir / "meta.json"
    assert meta == {**(json.loads(source.read_text()) if source.exists() else {}), "export": e.export}
    assert load_config(e.folder) == load_config(e.model_dir)  # the export is a model folder too


@pytest.mark.parametrize("name", ["vocab_pruned", "audio", "ctc", "tagger", "image"])
def test_encoder_graphs_take_any_batch_size_and_length(exported, name):
    e = exported(name)
    model, config = load_model(e.folder), load_config(e.folder)
    for batch in (1, 3):
        for length in (5, 11):
            if config.input == "image":
                inputs, valid, feeds = torch.randn(batch, 1, 8, 8), None, {}
                feeds = {"pixels": inputs}
            elif config.input == "audio":
                inputs = torch.randn(batch, 16, 4 * length + 2)
                valid = (
                    torch.arange(inputs.shape[-1])[None, :]
                    < torch.tensor([inputs.shape[-1]] * (batch - 1) + [9])[:, None]
                )
                feeds = {"mels": inputs, "valid": valid}
            else:
                inputs, valid = padded_ids(config.vocab_size, batch, length)
                feeds = {"input_ids": inputs, "valid": valid}
            got = run_onnx(e.folder, "model", feeds)
            with torch.no_grad():
                want = model(inputs, valid)
            assert got["logits"].shape == tuple(want.shape)
            assert np.abs(got["logits"] - want.numpy()).max() <= TOLERANCE
            if "output_valid" in got:
                assert (got["output_valid"] == model.output_valid(inputs, valid).numpy()).all()


def greedy_steps(folder: Path, prompt: torch.Tensor, heads: list[int], dh: int, n: int, extra: dict) -> list[list[int]]:
    """Greedy decoding with the decoder_step graph alone: the prompt (no past), then one token at a time."""
    past = {
        f"past_{k}_{i}": np.zeros((len(prompt), h, 0, dh), np.float32)
        for i, h in enumerate(heads)
        if h
        for k in ("key", "value")
    }
    tokens, out = prompt, []
    for _ in range(n):
        got = run_onnx(folder, "decoder_step", {"input_ids": tokens, **extra, **past})
        length = next(iter(past.values())).shape[2] + tokens.shape[1]
        for name in past:
            present = got[name.replace("past_", "present_")]
            assert present.shape == (len(prompt), heads[int(name.rsplit("_", 1)[1])], length, dh)
            past[name] = present
        tokens = torch.from_numpy(got["logits"][:, -1].argmax(-1))[:, None]
        out.append(tokens[:, 0].tolist())
    return [list(row) for row in zip(*out)]


def until(ids: list[int], eos: int | None) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


def test_decoder_step_generates_what_the_pruned_lm_generates(exported):
    e = exported("lm")
    model, config = load_model(e.folder), load_config(e.folder)
    heads = config.decoder.heads()
    assert heads == [0, 4, 2]
    for batch, length in ((1, 3), (3, 6)):
        prompt = torch.randint(0, config.vocab_size, (batch, length))
        want = model.generate(prompt, 8)[:, length:].tolist()
        got = greedy_steps(e.folder, prompt, heads, config.head_dim, 8, {})
        assert [until(g, config.eos_id) for g in got] == [until(w, config.eos_id) for w in want]
        logits = run_onnx(e.folder, "model", {"input_ids": prompt})["logits"]
        assert np.abs(logits - model(prompt).detach().numpy()).max() <= TOLERANCE


def test_cached_decoding_counts_positions_when_the_first_layer_has_no_heads():
    """The position offset comes from a layer that caches (sora.models.stack): a first layer pruned to no
    heads caches nothing, and its length would restart every step at position 0."""
    model = build_model(tiny("decoder_lm", decoder={"n_layers": 2, "n_heads": [0, 4], "d_ff": 64})).eval()
    ids = torch.randint(0, 50, (2, 6))
    cache = model.new_cache()
    with torch.no_grad():
        stepped = torch.cat(
            [model(ids[:, :3], cache=cache), model(ids[:, 3:4], cache=cache), model(ids[:, 4:], cache=cache)], 1
        )
        assert (stepped - model(ids)).abs().max() < 1e-5


def test_encoder_and_decoder_step_translate_like_the_model(exported):
    e = exported("translator")
    model, config = load_model(e.folder), load_config(e.folder)
    for batch, length in ((1, 4), (3, 9)):
        src, valid = padded_ids(config.vocab_size, batch, length, config.pad_id)
        memory = run_onnx(e.folder, "encoder", {"input_ids": src, "valid": valid})["memory"]
        assert np.abs(memory - model.encode(src, valid)[0].detach().numpy()).max() <= TOLERANCE
        bos = torch.full((batch, 1), config.bos_id)
        extra = {"memory": memory, "memory_valid": valid.numpy()}
        got = greedy_steps(e.folder, bos, config.decoder.heads(), config.head_dim, 8, extra)
        assert [until(g, config.eos_id) for g in got] == [
            until(w, config.eos_id) for w in model.generate(src, 8, src_valid=valid)
        ]


def test_int8_graph_states_its_agreement_with_torch(exported):
    e = exported("classifier_int8")
    assert e.export["precision"] == "int8" and e.export["parity"]["inputs"].startswith("validation (")
    int8 = e.export["parity"]["int8"]
    assert int8["predictions"] >= 8 and int8["label_agreement"] >= 0.9  # a trained classifier keeps its labels
    assert 0 < int8["max_logit_diff"] < 0.5  # int8 is not exact, and not far off
    assert e.export["parity"]["fp32_max_abs_diff"]["model"] <= TOLERANCE  # the fp32 graph was checked first
    graph = onnx.load(str(e.folder / "model.onnx"))
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in graph.graph.node)
    assert (e.folder / "model.onnx").stat().st_size < 0.6 * (e.folder / "model.safetensors").stat().st_size
    assert any("int8 against fp32 torch: label agreement" in line for line in e.log)
    assert not any(e.cwd.iterdir())  # nothing written outside the export folder (onnxruntime's temporary files)


def test_a_vocabulary_pruned_model_exports_with_its_own_tokenizer(exported):
    e = exported("vocab_pruned")
    assert load_tokenizer(e.folder).get_vocab_size() == load_config(e.folder).vocab_size < 120
    assert e.export["parity"]["inputs"].startswith("validation (")  # its data, read through the pruned tokenizer


def test_a_torch_int8_folder_is_refused_pointing_at_int8(tmp_path):
    model = quantize_model(build_model(tiny()).eval())
    folder = save_quantized(model, tmp_path / "int8")
    with pytest.raises(SoraError, match="--int8") as info:
        export_onnx(folder, tmp_path / "out")
    assert "torch int8" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def copying_export(source: Path):
    """An ``export_graph`` that copies an earlier export's graph instead of tracing (seconds saved)."""

    def export_graph(graph, path: Path) -> float:
        shutil.copyfile(source / graph.file, path)
        return 0.0

    return export_graph


def test_a_graph_that_differs_from_torch_is_refused_and_nothing_is_written(exported, monkeypatch, tmp_path):
    e = exported("image")
    monkeypatch.setattr(export_module, "export_graph", copying_export(e.folder))
    run = parity_module.Sessions.run
    monkeypatch.setattr(
        parity_module.Sessions,
        "run",
        lambda self, name, feeds: {k: v + 1e-3 for k, v in run(self, name, feeds).items()},
    )
    with pytest.raises(SoraError, match=r"model\.onnx: differs from the torch model by 0\.001") as info:
        export_onnx(e.model_dir, tmp_path / "out")
    assert "nothing was written" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder, no staging sibling


def test_unreadable_data_falls_back_to_generated_inputs_and_says_so(exported, monkeypatch, tmp_path):
    e = exported("vocab_pruned")
    folder = shutil.copytree(e.model_dir, tmp_path / "moved")
    meta = json.loads((folder / "meta.json").read_text())
    meta["provenance"]["data_config"]["source"] = str(tmp_path / "gone.csv")
    (folder / "meta.json").write_text(json.dumps(meta))
    monkeypatch.setattr(export_module, "export_graph", copying_export(e.folder))
    log = []
    export = export_onnx(folder, tmp_path / "out", log=log.append)
    assert export["parity"]["inputs"] == "generated"
    assert log[0].startswith("parity inputs: generated (its data could not be read here") and "gone.csv" in log[0]


def test_read_export_names_what_is_wrong(exported, tmp_path):
    e = exported("image")
    broken = shutil.copytree(e.folder, tmp_path / "broken")
    (broken / "model.onnx").unlink()
    with pytest.raises(SoraError, match="model.onnx: missing"):
        read_export(broken)
    with pytest.raises(SoraError, match="has no 'export' object"):
        read_export(e.model_dir)
    meta = json.loads((broken / "meta.json").read_text())
    meta["export"]["precision"] = "fp8"
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SoraError, match="precision: expected one of fp32, int8"):
        read_export(broken)
