"""Tokenizers carried over from older folders; recipes that start from pretrained weights; the CLI."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from sora.errors import ConfigError, SoraError
from sora.interop import import_hf, load_pretrained, with_pretrained
from sora.models import build_model, load_meta, load_tokenizer, save_model
from sora.recipe import Recipe
from tests.helpers import run_cli
from tests.interop.hf_models import SENTENCES, VOCAB


def test_vocab_txt_only_becomes_the_same_wordpiece_tokenizer(hf_folder, tmp_path):
    import transformers

    folder, _ = hf_folder("BertModel", "bert", vocab_txt=True)
    result = import_hf(folder)
    assert result.meta["tokenizer"]["from"] == "vocab.txt"
    expected = transformers.AutoTokenizer.from_pretrained(folder)(SENTENCES)["input_ids"]  # reads vocab.txt
    ours = [e.ids for e in result.tokenizer.encode_batch(SENTENCES)]
    assert ours == expected and ours[0][0] == VOCAB.index("[CLS]") and ours[0][-1] == VOCAB.index("[SEP]")
    save_model(result.model, tmp_path / "m", tokenizer=result.tokenizer, meta=result.meta)
    assert [e.ids for e in load_tokenizer(tmp_path / "m").encode_batch(SENTENCES)] == expected


def test_vocab_json_and_merges_become_gpt2s_byte_level_bpe(hf_folder):
    import transformers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        SENTENCES * 5,
        trainers.BpeTrainer(
            vocab_size=99, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]
        ),
    )
    folder, _ = hf_folder("GPT2LMHeadModel", "gpt2")
    bpe.model.save(str(folder))  # vocab.json + merges.txt
    result = import_hf(folder)
    assert result.meta["tokenizer"]["from"] == "vocab.json + merges.txt"
    expected = transformers.AutoTokenizer.from_pretrained(folder)(SENTENCES)["input_ids"]  # vocab.json + merges
    assert [e.ids for e in result.tokenizer.encode_batch(SENTENCES)] == expected


def classifier_config(imported, **overrides):
    data = imported.config.model_dump()
    data.update(arch="encoder_classifier", n_classes=2, pooling="mean", **overrides)
    return type(imported.config).model_validate(data)


def test_a_classifier_starts_from_an_imported_encoder(hf_folder, tmp_path):
    folder, _ = hf_folder("BertModel", "bert", vocab_txt=True)
    encoder = import_hf(folder).model
    save_model(encoder, tmp_path / "enc", tokenizer=import_hf(folder).tokenizer)
    model = build_model(classifier_config(encoder, max_len=16)).eval()
    result = load_pretrained(model, tmp_path / "enc")
    assert result.fresh == ["head.classifier.weight", "head.classifier.bias"]
    assert torch.equal(model.embed.position.weight, encoder.embed.position.weight[:16])  # a shorter max_len
    ids = torch.randint(1, 99, (2, 10))
    with torch.no_grad():
        assert torch.allclose(model.run_stack(ids)[0], encoder(ids), atol=1e-6)  # the same body
    # straight from the Hugging Face folder too
    other = build_model(classifier_config(encoder))
    assert len(load_pretrained(other, folder).loaded) == len(result.loaded)


def test_a_mismatched_architecture_names_the_key(hf_folder):
    folder, _ = hf_folder("BertModel", "bert")
    encoder = import_hf(folder).model
    for overrides, key in (
        ({"d_ff": 64}, "model.encoder.d_ff"),
        ({"norm_position": "pre"}, "model.norm_position"),
        ({"max_len": 999}, "model.max_len"),
    ):
        stack = {**encoder.config.encoder.model_dump(), **{k: v for k, v in overrides.items() if k == "d_ff"}}
        config = classifier_config(encoder, encoder=stack, **{k: v for k, v in overrides.items() if k != "d_ff"})
        with pytest.raises(ConfigError, match=key):
            load_pretrained(build_model(config), folder)


def test_a_recipe_with_init_reads_the_pretrained_tokenizer_and_loads_weights_on_build(hf_folder, tmp_path):
    folder, _ = hf_folder("BertModel", "bert", vocab_txt=True)
    encoder = import_hf(folder).model

    def recipe(**data):
        return Recipe.model_validate(
            {
                "name": "t",
                "init": str(folder),
                "model": classifier_config(encoder).model_dump(),
                "data": {"dataset": "rotten_tomatoes", "task": "classification", "max_len": 32, **data},
            }
        )

    seen = []
    new_recipe, on_model = with_pretrained(recipe(), tmp_path, on_model=seen.append, log=lambda _m: None)
    tokenizer = new_recipe.data.tokenizer
    assert tokenizer.kind == "pretrained" and tokenizer.path == str(tmp_path / "pretrained" / "tokenizer.json")
    assert Tokenizer.from_file(tokenizer.path).encode("the film").ids[0] == VOCAB.index("[CLS]")
    assert new_recipe.data.max_len == 32 and new_recipe.init == str(folder)
    model = build_model(new_recipe.model)
    on_model(model)
    assert seen == [model] and torch.equal(model.embed.tokens.weight, encoder.embed.tokens.weight)
    with pytest.raises(ConfigError, match="data.tokenizer"):
        with_pretrained(recipe(tokenizer={"kind": "bpe", "vocab_size": 500}), tmp_path)


def test_cli_import_and_export(hf_folder, tmp_path, capsys):
    folder, _ = hf_folder("BertForSequenceClassification", "bert", vocab_txt=True)
    code, out, _ = run_cli(capsys, "hf", "import", str(folder), "--out", str(tmp_path / "m"))
    out = " ".join(out.split())  # rich wraps long lines
    assert code == 0, out
    assert "-> encoder_classifier" in out and "tokenizer: from vocab.txt" in out and "(ok)" in out
    parity = load_meta(tmp_path / "m")["parity"]
    assert parity["ok"] and parity["logits"] < 1e-4
    code, out, _ = run_cli(
        capsys, "hf", "export", str(tmp_path / "m"), "--out", str(tmp_path / "hf"), "--json", "--one-segment"
    )
    assert code == 0 and json.loads(out)["architecture"] == "BertForSequenceClassification"
    assert (tmp_path / "hf" / "tokenizer.json").is_file()


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    from tests.helpers import run_cli, tiny

    save_model(build_model(tiny("encoder_classifier")), tmp_path / "m")
    code, _, err = run_cli(capsys, "hf", "export", str(tmp_path / "m"), "--out", str(tmp_path / "hf"))
    assert code == 2 and "cannot export" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "hf", "import", str(tmp_path / "missing"), "--out", str(tmp_path / "x"))
    assert code == 2 and "no such folder" in err
    assert not (tmp_path / "hf").exists() and not (tmp_path / "x").exists()
    for args in (["hf", "import", "--help"], ["hf", "export", "--help"]):
        code, out, _ = run_cli(capsys, *args)
        assert code == 0 and "--out" in out


def test_import_errors_are_sora_errors(tmp_path):
    with pytest.raises(SoraError, match="expected a folder"):
        (tmp_path / "f").write_text("x")
        import_hf(tmp_path / "f")


def test_folders_of_the_other_kind_and_overwriting_the_source_are_refused(hf_folder, tmp_path):
    from sora.interop import export_hf, import_to_folder

    folder, _ = hf_folder("BertModel", "bert")
    with pytest.raises(SoraError, match="Hugging Face folder being imported"):
        import_to_folder(folder, folder, verify=False)
    with pytest.raises(SoraError, match="is a Hugging Face folder already"):
        export_hf(folder, tmp_path / "x")
    _, sora_dir = import_to_folder(folder, tmp_path / "sora", verify=False)
    with pytest.raises(SoraError, match="is a Sora model folder already"):
        import_hf(sora_dir)
    with pytest.raises(SoraError, match="model folder being exported"):
        export_hf(sora_dir, sora_dir)
    assert (folder / "model.safetensors").is_file() and (sora_dir / "meta.json").is_file()
