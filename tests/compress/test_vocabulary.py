"""Vocabulary pruning: fewer token rows, the same tokens and outputs on the texts it was cut for."""

from __future__ import annotations

import pytest
import torch

from sora.compress import CompressConfig, PruneConfig
from sora.compress.stage import compress_model
from sora.compress.vocabulary import prune_vocabulary
from sora.configio import load
from sora.data import DataConfig, NormalizeConfig, TokenizerConfig, prepare_data
from sora.data.tokenizer import SPECIALS, train_tokenizer
from sora.errors import SoraError
from sora.models import build_model, load_model, load_tokenizer, save_model
from tests.data.util import sentiment_rows, write_csv
from tests.helpers import run_cli, tiny

# the tokenizer's corpus is broader than the task's texts, like a pretrained vocabulary
OTHER = [
    "quantum zebras juggle xylophones",
    "a velvet harbour at midnight",
    "kilowatts of yellow jazz",
    "the physician's zeppelin",
    "overwhelmingly quixotic",
] * 3


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory):
    csv = write_csv(tmp_path_factory.mktemp("vocab") / "reviews.csv", sentiment_rows(60))
    path = csv.parent / "data.yaml"
    path.write_text(f"source: {csv}\nsplit: {{validation: 0.2, test: 0.2, seed: 0}}\nmax_len: 32\n")
    return path


@pytest.fixture(scope="module")
def data(data_yaml):
    texts = [t for _, t in sentiment_rows(60)] + OTHER
    broad = train_tokenizer(
        texts, TokenizerConfig(kind="wordpiece", vocab_size=400, min_frequency=1), NormalizeConfig()
    )
    return prepare_data(load(DataConfig, data_yaml), tokenizer=broad)


def _model(data, arch="encoder_classifier", **extra):
    torch.manual_seed(0)
    if arch == "encoder_classifier":
        extra["n_classes"] = len(data.labels)
    return build_model(tiny(arch, vocab_size=data.vocab_size, **extra)).eval()


def test_fewer_rows_same_tokens_and_outputs_on_the_texts(data):
    model = _model(data)
    texts = data.texts("train")
    result = prune_vocabulary(model, data.tokenizer, texts)
    before, after = result.report["vocabulary_before"], result.report["vocabulary_after"]
    assert after < before and result.model.config.vocab_size == after
    assert result.model.embed.tokens.weight.shape[0] == after
    new_id = {old: new for new, old in enumerate(result.kept)}
    for text in texts:
        old, new = data.tokenizer.encode(text).ids, result.tokenizer.encode(text).ids
        assert new == [new_id[i] for i in old]
    retok = data.retokenized(result.tokenizer)
    for a, b in zip(data.loader("train", 16), retok.loader("train", 16)):
        assert torch.equal(model(a["inputs"], a["valid"]), result.model(b["inputs"], b["valid"]))


def test_an_unseen_word_falls_back_to_pieces_not_unknown(data):
    result = prune_vocabulary(_model(data), data.tokenizer, data.texts("train"))
    full, pruned = data.tokenizer.encode("quantum zebras"), result.tokenizer.encode("quantum zebras")
    unk = result.tokenizer.token_to_id("[UNK]")
    assert unk not in pruned.ids and len(pruned.ids) > len(full.ids)  # spelled in smaller pieces
    assert result.tokenizer.decode(pruned.ids) == data.tokenizer.decode(full.ids) == "quantum zebras"
    for special in SPECIALS:
        assert result.tokenizer.id_to_token(result.tokenizer.token_to_id(special)) == special


def test_the_pruned_folder_reloads_with_its_own_tokenizer(data, tmp_path):
    result = prune_vocabulary(_model(data), data.tokenizer, data.texts("train"))
    folder = save_model(result.model, tmp_path / "model", tokenizer=result.tokenizer)
    model, tok = load_model(folder).eval(), load_tokenizer(folder)
    assert tok.get_vocab_size() == model.config.vocab_size == result.report["vocabulary_after"]
    ids = torch.tensor([tok.encode("a fine and moving film").ids])
    assert torch.equal(model(ids), result.model(ids))


def test_a_language_model_head_loses_the_same_rows(data):
    model = _model(data, "decoder_lm", tie_embeddings=False)
    result = prune_vocabulary(model, data.tokenizer, data.texts("train"))
    ids = torch.tensor([data.tokenizer.encode("a fine and moving film").ids])
    new_id = {old: new for new, old in enumerate(result.kept)}
    new_ids = ids.clone().apply_(lambda i: new_id[i])
    logits, pruned_logits = model(ids), result.model(new_ids)  # (1, T, V), (1, T, V')
    assert torch.allclose(logits[..., result.kept], pruned_logits, atol=1e-6)


def test_bpe_and_quantized_models_are_refused_clearly(data):
    bpe = train_tokenizer(
        data.texts("train"), TokenizerConfig(kind="bpe", vocab_size=200, min_frequency=1), NormalizeConfig()
    )
    model = build_model(tiny(vocab_size=bpe.get_vocab_size()))
    with pytest.raises(SoraError, match="WordPiece"):
        prune_vocabulary(model, bpe, data.texts("train"))
    with pytest.raises(SoraError, match="vocab_size"):
        prune_vocabulary(build_model(tiny(vocab_size=50)), data.tokenizer, data.texts("train"))


def test_compress_prunes_the_vocabulary_and_evaluates_through_the_new_tokenizer(data, tmp_path):
    source = save_model(_model(data), tmp_path / "model", tokenizer=data.tokenizer)
    config = CompressConfig(prune=PruneConfig(heads=0.25, vocabulary=True), latency_repeats=1, importance_batches=1)
    report = compress_model(source, data, config, tmp_path / "out", log=lambda m: None)
    assert report["pruning"]["vocabulary"]["vocabulary_after"] < data.vocab_size
    for name in ("pruned", "pruned_int8"):
        folder = tmp_path / "out" / name
        assert load_tokenizer(folder).get_vocab_size() == load_model(folder).config.vocab_size
    variants = report["variants"]
    assert variants["pruned"]["parameters"] < variants["fp32"]["parameters"]
    assert variants["pruned+int8"]["bytes"] < variants["int8"]["bytes"]


def test_sora_prune_vocabulary_from_the_command_line(capsys, data, data_yaml, tmp_path):
    source = save_model(_model(data), tmp_path / "model", tokenizer=data.tokenizer)
    code, out, err = run_cli(capsys, "prune", source, "--out", tmp_path / "p", "--vocabulary", data_yaml)
    assert code == 0, err
    after = load_model(tmp_path / "p").config.vocab_size
    assert after < data.vocab_size and f"-> {after:,} tokens" in out
    assert load_tokenizer(tmp_path / "p").get_vocab_size() == after
    code, out, err = run_cli(capsys, "prune", source, "--out", tmp_path / "q", "--vocabulary", tmp_path / "none.yaml")
    assert code != 0 and "none.yaml" in err and not (tmp_path / "q").exists()
