"""What an import keeps or chooses is said, and an export never silently differs from the original:
BERT's token types (kept as the segment embedding since issue 23; older imports dropped row 1), and the
pooling of a sentence-transformers folder."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sora.errors import SoraError
from sora.interop import export_hf, import_hf
from sora.interop.pretrained import load_pretrained
from sora.interop.verify import TOLERANCE, compare_with_transformers
from sora.models import ModelConfig, build_model, load_model, save_model
from tests.helpers import run_cli
from tests.interop.hf_models import text_batch

TYPES = "embeddings.token_type_embeddings.weight"


def imported(hf_folder, tmp_path, *, same_types: bool = False):
    """A tiny BertModel imported into a Sora folder; ``same_types``: its token-type row 1 equals row 0."""
    folder, model = hf_folder("BertModel", "bert")
    if same_types:
        with torch.no_grad():
            model.embeddings.token_type_embeddings.weight[1] = model.embeddings.token_type_embeddings.weight[0]
        model.save_pretrained(folder)
    result = import_hf(folder)
    return save_model(result.model, tmp_path / "sora", tokenizer=result.tokenizer, meta=result.meta), model


def test_an_import_keeps_both_token_types_as_the_segment_embedding(hf_folder, tmp_path):
    sora_dir, hf_model = imported(hf_folder, tmp_path)
    types = hf_model.embeddings.token_type_embeddings.weight.detach()
    model = load_model(sora_dir)
    assert model.config.segments == 2 and torch.equal(model.embed.segment.weight.detach(), types)
    assert json.loads((sora_dir / "meta.json").read_text())["token_types"] == {"rows": 2, "kept_as": "embed.segment"}


def test_pair_inputs_give_the_original_hidden_states_and_export_writes_the_types_back(hf_folder, tmp_path):
    sora_dir, original = imported(hf_folder, tmp_path)  # token types 0 and 1 differ
    ids, valid = text_batch()
    types = (torch.arange(ids.shape[1]) >= 4).long().expand_as(ids) * valid
    model = load_model(sora_dir)
    with torch.no_grad():
        ours = model(ids, valid, types)
        theirs = original(input_ids=ids, attention_mask=valid.long(), token_type_ids=types).last_hidden_state
    assert float((ours - theirs).abs()[valid].max()) < TOLERANCE
    report = export_hf(sora_dir, tmp_path / "out", verify=True)
    assert report["parity"]["ok"] and report["parity"]["second_segment_hidden_state"] <= TOLERANCE
    written = load_file(str(tmp_path / "out" / "model.safetensors"))[TYPES]
    assert torch.equal(written, original.embeddings.token_type_embeddings.weight.detach())


def test_a_one_text_model_started_from_bert_folds_segment_zero_into_its_positions(hf_folder, tmp_path):
    sora_dir, original = imported(hf_folder, tmp_path)
    pretrained = load_model(sora_dir)
    config = pretrained.config.model_copy(update={"segments": 0})
    one_text = build_model(ModelConfig.model_validate(config.model_dump())).eval()
    load_pretrained(one_text, sora_dir)
    ids, valid = text_batch()
    with torch.no_grad():
        assert float((one_text(ids, valid) - pretrained(ids, valid)).abs()[valid].max()) < TOLERANCE


def test_an_older_import_that_dropped_a_differing_token_type_is_refused(hf_folder, tmp_path, capsys):
    sora_dir, _ = imported(hf_folder, tmp_path)
    _as_older_import(sora_dir, dropped_max_diff=0.5)
    with pytest.raises(SoraError, match=r"token type 1 \(a sentence pair's second segment\) differs .* --one-segment"):
        export_hf(sora_dir, tmp_path / "out", verify=False)
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(capsys, "hf", "export", sora_dir, "--out", tmp_path / "out", "--no-verify")
    assert code == 2 and "second segment" in err
    report = export_hf(sora_dir, tmp_path / "out", verify=True, one_segment=True)
    assert report["parity"]["ok"]


def _as_older_import(sora_dir, dropped_max_diff: float | None) -> None:
    """Rewrite a folder as imports before segment embeddings wrote it: row 0 folded, row 1 dropped."""
    model = load_model(sora_dir)
    state = model.state_dict()
    state["embed.position.weight"] = state["embed.position.weight"] + state.pop("embed.segment.weight")[0]
    config = model.config.model_copy(update={"segments": 0})
    older = build_model(ModelConfig.model_validate(config.model_dump()))
    older.load_state_dict(state)
    meta = json.loads((sora_dir / "meta.json").read_text())
    if dropped_max_diff is None:
        del meta["token_types"]
    else:
        meta["token_types"] = {"rows": 2, "folded_row": 0, "dropped_max_diff": dropped_max_diff}
    save_model(older, sora_dir, meta=meta)


def test_the_parity_check_catches_a_second_segment_that_differs(hf_folder, tmp_path):
    sora_dir, _ = imported(hf_folder, tmp_path, same_types=True)
    export_hf(sora_dir, tmp_path / "out", verify=False)
    weights = load_file(str(tmp_path / "out" / "model.safetensors"))
    weights[TYPES][1] = torch.randn(weights[TYPES].shape[1])  # what a bad export would write
    save_file(weights, str(tmp_path / "out" / "model.safetensors"), metadata={"format": "pt"})
    model = load_model(sora_dir)
    single = compare_with_transformers(model, tmp_path / "out")
    both = compare_with_transformers(model, tmp_path / "out", segments=True)
    assert single["ok"] and "second_segment_hidden_state" not in single
    assert not both["ok"] and both["last_hidden_state"] <= TOLERANCE < both["second_segment_hidden_state"]


def test_a_bert_imported_before_the_record_existed_is_refused_until_reimported(hf_folder, tmp_path):
    sora_dir, _ = imported(hf_folder, tmp_path, same_types=True)
    _as_older_import(sora_dir, dropped_max_diff=None)
    with pytest.raises(SoraError, match="re-import it to check, or pass --one-segment"):
        export_hf(sora_dir, tmp_path / "out", verify=False)


def test_a_failure_inside_transformers_is_one_line_and_writes_nothing(hf_folder, tmp_path, capsys):
    folder, _ = hf_folder("BertModel", "bert")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"neg": "negative"}  # transformers wants integer ids as keys
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "hf", "import", folder, "--out", tmp_path / "m", "--verify")
    assert code == 2 and "transformers could not load or run it to check parity (ValueError: " in err
    assert "Traceback" not in err and not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------- pooling


def pooling_note(folder) -> str:
    return next(n for n in import_hf(folder).notes if n.startswith("pooling: "))


def write_pooling(folder, name: str = "1_Pooling", mode: str = "mean") -> None:
    (folder / name).mkdir()
    (folder / name / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, f"pooling_mode_{mode}_tokens": True})
    )


def test_pooling_says_where_it_came_from(hf_folder, capsys, tmp_path):
    folder, _ = hf_folder("BertModel", "bert")
    assert pooling_note(folder) == (
        "pooling: cls (the default: no sentence-transformers pooling settings in the "
        "folder; --pooling mean chooses mean pooling)"
    )
    (folder / "config_sentence_transformers.json").write_text("{}")
    assert (
        "a sentence-transformers folder (config_sentence_transformers.json) without modules.json or "
        "1_Pooling/config.json, so how it pools is unknown" in pooling_note(folder)
    )
    write_pooling(folder)
    assert pooling_note(folder) == (
        "pooling: mean (from 1_Pooling/config.json; no modules.json, so embeddings are taken as not normalised)"
    )
    code, out, _ = run_cli(capsys, "hf", "import", folder, "--out", tmp_path / "m", "--no-verify", "--pooling", "cls")
    assert code == 0 and "note: pooling: cls (--pooling)" in out


def test_modules_json_names_the_pooling_folder_inside_the_model_folder(hf_folder, tmp_path):
    folder, _ = hf_folder("BertModel", "bert")
    write_pooling(folder, "pool")
    modules = [
        {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "path": "pool", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "path": "norm", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    result = import_hf(folder)
    assert result.meta["sentence_embedding"] == {"pooling": "mean", "normalize": True}
    assert "pooling: mean (from pool/config.json)" in result.notes
    modules[1]["path"] = "../pool"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(SoraError, match="outside the model folder"):
        import_hf(folder)
