"""No silent wrong results (issue 19, defect 5): what used to give a wrong answer with exit 0 is now
one clear line and exit 2, or a warning where the result is still valid. Inputs are generated where
a class of inputs is at stake (damaged weights, damaged cache files, limits, prompts, label sets)."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from tokenizers import Tokenizer, models

from sora.data import builtin, cache, prepare_data
from sora.data.config import NormalizeConfig, TokenizerConfig
from sora.data.tokenizer import train_tokenizer
from sora.errors import SoraError, SoraWarning
from sora.models import build_model, load_model, load_tokenizer, save_model
from sora.models.beam import lm_beam_search
from sora.models.generate import prompt_ids, unencodable
from sora.train import baseline
from tests.helpers import fuzz, run_cli, save_tiny, tiny

WORDS = {"pos": ["good", "great", "fine"], "neg": ["bad", "dull", "weak"]}
TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 8
UNKNOWN = "Zé✓Q!"  # never in TEXT: the character tokenizer has no id for them


def write_reviews(folder, labels=("neg", "pos"), n=40):
    """A CSV of reviews and a data config that reads it; returns the config's path."""
    rows = [f"the {WORDS['pos' if i % 2 else 'neg'][i % 3]} film {i},{labels[i % len(labels)]}" for i in range(n)]
    (folder / "reviews.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    config = {
        "source": str(folder / "reviews.csv"),
        "split": {"validation": 0.25, "test": 0.25},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 60, "min_frequency": 1},
    }
    (folder / "data.yaml").write_text(yaml.safe_dump(config))
    return folder / "data.yaml"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """(model folder, data config): an untrained tiny classifier saved with its tokenizer and labels."""
    folder = tmp_path_factory.mktemp("classifier")
    data_yaml = write_reviews(folder)
    data = prepare_data(yaml.safe_load(data_yaml.read_text()))
    torch.manual_seed(0)
    return save_tiny(folder / "model", data), data_yaml


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """An untrained tiny character LM saved with its tokenizer."""
    folder = tmp_path_factory.mktemp("lm")
    (folder / "book.txt").write_text(TEXT)
    data = prepare_data(
        {
            "source": str(folder / "book.txt"),
            "format": "text",
            "task": "lm",
            "tokenizer": {"kind": "char", "min_frequency": 1},
            "block_size": 16,
        }
    )
    torch.manual_seed(0)
    return save_tiny(folder / "model", data, "decoder_lm")


def copy_folder(source, target, *, drop=()):
    shutil.copytree(source, target)
    for name in drop:
        (target / name).unlink()
    return target


def poison(folder, name, value=math.nan, index=0):
    """Rewrite ``folder``'s weights with one non-finite value in tensor ``name``."""
    model = load_model(folder)
    model.state_dict()[name].view(-1)[index] = value
    save_model(model, folder, tokenizer=load_tokenizer(folder))
    return folder


# -- sora eval on a folder without tokenizer.json --------------------------------------------------------


def test_eval_refuses_a_text_model_without_its_tokenizer(tmp_path, capsys, classifier):
    model_dir, data_yaml = classifier
    bare = copy_folder(model_dir, tmp_path / "bare", drop=["tokenizer.json"])
    err = run_cli(capsys, "eval", bare, "--data", data_yaml).error()
    assert "lacks tokenizer.json" in err and str(bare) in err
    code, out, err = run_cli(capsys, "eval", model_dir, "--data", data_yaml, "--json")  # with it, it evaluates
    assert code == 0 and "accuracy" in json.loads(out)["metrics"], err


def test_eval_of_an_image_model_needs_no_tokenizer(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SORA_HOME", str(tmp_path / "home"))  # digits: from scikit-learn, offline
    data_yaml = tmp_path / "digits.yaml"
    data_yaml.write_text("dataset: digits\nlimit: 40\n")
    data = prepare_data({"dataset": "digits", "limit": 40})
    model = build_model(tiny(**{**data.model_fields(), "image": {"size": 8, "channels": 1, "patch": 4}}))
    save_model(model, tmp_path / "model", meta={"labels": data.labels})
    code, out, err = run_cli(capsys, "eval", tmp_path / "model", "--data", data_yaml, "--json")
    assert code == 0, err
    assert json.loads(out)["task"] == "classification"


# -- non-finite weights ------------------------------------------------------------------------------------


@fuzz(30)
@given(data=st.data())
def test_non_finite_weights_are_refused_naming_the_first_such_tensor(tmp_path_factory, data):
    torch.manual_seed(0)
    model = build_model(tiny())
    state = model.state_dict()
    names = [name for name, t in state.items() if t.is_floating_point()]
    chosen = data.draw(st.lists(st.sampled_from(names), max_size=3, unique=True), label="poisoned tensors")
    huge = data.draw(st.sampled_from([None, *names]), label="huge but finite tensor")  # its sum overflows
    if huge is not None:
        state[huge].fill_(3e38)
    for name in chosen:
        value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]), label="value")
        state[name].view(-1)[data.draw(st.integers(0, state[name].numel() - 1), label="index")] = value
    folder = save_model(model, tmp_path_factory.mktemp("weights") / "model")
    if not chosen:
        load_model(folder)  # finite weights load as before
        return
    with pytest.raises(SoraError) as refused:
        load_model(folder)
    first = min(chosen, key=names.index)
    assert f"model.safetensors: tensor '{first}' has non-finite values" in str(refused.value)


@pytest.mark.parametrize("command", ["eval", "analyze", "compress", "generate"])
def test_every_command_refuses_nan_weights(tmp_path, capsys, classifier, lm, command):
    model_dir, data_yaml = classifier
    source, tensor = (
        (lm, "layers.0.ffn.fc_in.weight") if command == "generate" else (model_dir, "layers.1.attn.q_proj.bias")
    )
    folder = poison(copy_folder(source, tmp_path / "nan"), tensor, index=3)
    rest = {
        "eval": ["--data", data_yaml],
        "analyze": ["--data", data_yaml, "--out", tmp_path / "out"],
        "compress": ["--data", data_yaml, "--out", tmp_path / "out"],
        "generate": ["--prompt", "the"],
    }[command]
    assert f"tensor '{tensor}' has non-finite values (1 NaN, 0 inf)" in run_cli(capsys, command, folder, *rest).error()
    assert not (tmp_path / "out").exists()


# -- the dataset cache checks what it reads ------------------------------------------------------------


def damage(path, kind: str, where: float) -> None:
    raw = bytearray(path.read_bytes())
    at = min(int(where * len(raw)), len(raw) - 1)
    if kind == "truncate":
        path.write_bytes(bytes(raw[:at]))
    elif kind == "flip":  # same size: only the checksum can tell
        raw[at] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif kind == "append":
        path.write_bytes(bytes(raw) + b"\n")
    else:
        path.unlink()


@fuzz(40)
@given(
    kind=st.sampled_from(["truncate", "flip", "append", "delete"]),
    where=st.floats(0, 1),
    file=st.sampled_from(["data.csv", "parts/b.bin"]),
    old_manifest=st.booleans(),
)
def test_every_damaged_cache_file_is_found(tmp_path_factory, kind, where, file, old_manifest):
    folder = tmp_path_factory.mktemp("home") / "datasets" / "toy"
    with cache.building(folder) as tmp:
        (tmp / "data.csv").write_text("text,label\n" + "a row,x\n" * 500)
        (tmp / "parts").mkdir()
        (tmp / "parts" / "b.bin").write_bytes(bytes(range(256)) * 8)
    if old_manifest:  # written before sizes were recorded: the checksum still tells
        manifest = cache.read_manifest(folder)
        del manifest["sizes"]
        (folder / cache.MANIFEST).write_text(json.dumps(manifest))
    assert cache.damage(folder) is None
    damage(folder / file, kind, where)
    found = cache.damage(folder)
    assert found is not None and file in found
    if kind != "flip" and not old_manifest:  # a changed size is found without hashing anything
        assert file in cache.damage(folder, verify=False)


def test_a_truncated_cached_dataset_is_fetched_again_never_read(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SORA_HOME", str(tmp_path))
    folder = builtin.fetch("digits")
    npz = folder / "digits.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    code, out, err = run_cli(capsys, "data", "show", "digits", "--json")
    assert code == 0, err
    assert "warning: digits: the cached copy" in err and "digits.npz has" in err and "fetching it again" in err
    assert sum(json.loads(out)["splits"].values()) == 1797  # every row, from a fresh copy
    assert cache.damage(folder) is None


# -- limit: 0 is not "no limit" ------------------------------------------------------------------------


@fuzz(10)
@given(limit=st.integers(-2, 6))
def test_limit_counts_rows_and_zero_is_refused(tmp_path_factory, capsys, limit):
    data_yaml = write_reviews(tmp_path_factory.mktemp("limit"))
    answer = run_cli(capsys, "data", "show", data_yaml, "--limit", limit, "--json")
    if limit <= 0:
        message = answer.error()
        assert "limit" in message and "greater than 0" in message
        return
    assert answer.code == 0, answer.stderr
    splits = json.loads(answer.out)["splits"]
    assert all(0 < n <= limit for n in splits.values()) and splits["train"] == limit


def test_limit_zero_is_refused_for_a_builtin_and_in_eval(tmp_path, capsys, classifier):
    model_dir, data_yaml = classifier
    assert "limit" in run_cli(capsys, "data", "show", "digits", "--limit", "0").error()
    assert "limit" in run_cli(capsys, "eval", model_dir, "--data", data_yaml, "--set", "limit=0").error()


# -- beam search for language models -------------------------------------------------------------------


@fuzz(12)
@given(seed=st.integers(0, 10_000), prompt=st.lists(st.integers(0, 4), min_size=1, max_size=3), new=st.integers(1, 3))
def test_lm_beam_search_finds_the_most_likely_continuation(seed, prompt, new):
    torch.manual_seed(seed)
    model = build_model(tiny("decoder_lm", vocab_size=5, max_len=8)).eval()
    options = torch.tensor(list(itertools.product(range(5), repeat=new)))  # every continuation (5**new, new)
    ids = torch.cat([torch.tensor(prompt).expand(len(options), -1), options], dim=1)
    with torch.no_grad():
        logp = model(ids).log_softmax(-1)[:, len(prompt) - 1 : -1]  # (N, new, V)
    scores = logp.gather(-1, options[..., None]).squeeze(-1).sum(-1)
    best = lm_beam_search(model, torch.tensor([prompt]), beam=5 ** (new - 1) if new > 1 else 5, max_new_tokens=new)
    assert best == [options[scores.argmax()].tolist()]


@fuzz(8)
@given(seed=st.integers(0, 10_000), new=st.integers(1, 14))
def test_lm_beam_of_one_is_greedy_even_past_the_window(seed, new):
    torch.manual_seed(seed)
    model = build_model(tiny("decoder_lm", max_len=6, position="rotary")).eval()
    prompt = torch.tensor([[3, 4, 5]])
    greedy = model.generate(prompt, new, temperature=0)[0, 3:].tolist()
    assert lm_beam_search(model, prompt, beam=1, max_new_tokens=new) == [greedy]


def test_generate_uses_beam_for_a_language_model(capsys, lm):
    args = ["generate", lm, "--prompt", "the c", "--max-new-tokens", "6", "--beam", "3"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    tokenizer = load_tokenizer(lm)
    ids = tokenizer.encode("the c", add_special_tokens=False).ids
    best = lm_beam_search(load_model(lm), torch.tensor([ids]), beam=3, max_new_tokens=6)[0]
    assert out.strip() == tokenizer.decode(ids + best, skip_special_tokens=True).strip()
    assert run_cli(capsys, *args).out == out  # a search, not a sample: the same every time
    assert "--samples 2 with --beam 3" in run_cli(capsys, *args, "--samples", "2").error()


# -- characters a prompt's tokenizer cannot encode -----------------------------------------------------


@fuzz(60)
@given(prompt=st.text(alphabet="the cat" + UNKNOWN + " \t", max_size=12))
def test_prompt_characters_the_tokenizer_cannot_encode_are_named(lm, prompt):
    tokenizer = load_tokenizer(lm)
    unknown = UNKNOWN + "\t"  # the book has no tab either
    kept = prompt.strip()  # the tokenizer's normaliser strips the ends
    bad = list(dict.fromkeys(c for c in kept if c in unknown))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if bad and all(c in unknown for c in kept):
            with pytest.raises(SoraError, match="can encode none of it"):
                prompt_ids(tokenizer, prompt)
            return
        ids = prompt_ids(tokenizer, prompt)
    said = [str(w.message) for w in caught if issubclass(w.category, SoraWarning)]
    if not bad:
        assert not said and tokenizer.decode(ids) == kept
        return
    assert len(said) == 1 and f"cannot encode {', '.join(map(repr, bad))} (read as [UNK])" in said[0]


def test_dropped_characters_and_stop_words():
    bpe = Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[]))  # no unknown token: it drops what it lacks
    assert unencodable(bpe, "abcab d") == ([], ["c", "d"])
    with pytest.warns(SoraWarning, match=r"'c', 'd' \(dropped\)"):
        assert prompt_ids(bpe, "abcab d") == [0, 1, 0, 1]
    words = train_tokenizer(
        ["the cat sat"] * 4,
        TokenizerConfig(kind="wordpiece", vocab_size=40, min_frequency=1),
        NormalizeConfig(stopwords=True),
    )
    assert unencodable(words, "the cat a sat") == ([], [])  # stop words are removed on purpose, not lost


def test_generate_warns_about_unknown_characters_and_refuses_a_prompt_of_nothing_else(capsys, lm):
    code, out, err = run_cli(capsys, "generate", lm, "--prompt", "the Zat", "--max-new-tokens", "3", "--seed", "0")
    assert code == 0 and out.startswith("the at") and "warning: --prompt: the tokenizer cannot encode 'Z'" in err
    err = run_cli(capsys, "generate", lm, "--prompt", "ZQ!", "--max-new-tokens", "3").error()
    assert "can encode none of it" in err and "'Z', 'Q', '!'" in err


# -- labels of the data against the model's -----------------------------------------------------------


@fuzz(8)
@example(labels=["pos", "neg"])  # the model's own labels, in another order in the file: accepted
@example(labels=["bad", "good"])
@given(labels=st.lists(st.sampled_from(["neg", "pos", "mixed", "bad", "good"]), min_size=2, max_size=3, unique=True))
def test_eval_refuses_data_with_other_labels_naming_both(tmp_path_factory, capsys, classifier, labels):
    model_dir, _ = classifier
    data_yaml = write_reviews(tmp_path_factory.mktemp("labels"), labels=labels)
    answer = run_cli(capsys, "eval", model_dir, "--data", data_yaml)
    if sorted(labels) == ["neg", "pos"]:
        assert answer.code == 0, answer.stderr
        return
    message = answer.error()
    assert f"[{', '.join(sorted(labels))}]" in message and "[neg, pos]" in message


def test_analyze_refuses_data_with_other_labels_naming_both(tmp_path, capsys, classifier):
    model_dir, _ = classifier
    data_yaml = write_reviews(tmp_path, labels=("bad", "good"))
    err = run_cli(capsys, "analyze", model_dir, "--data", data_yaml, "--out", tmp_path / "an").error()
    assert "labels [bad, good] do not match the labels" in err and "[neg, pos]" in err
    assert not (tmp_path / "an").exists()


# -- SORA_HOME that is a file --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["data", "list"], ["data", "fetch", "digits"], ["data", "show", "digits"]])
@pytest.mark.parametrize("file_at", ["SORA_HOME", "SORA_HOME/datasets"])
def test_sora_home_that_is_a_file_is_one_line(tmp_path, capsys, monkeypatch, args, file_at):
    home = tmp_path / "home"
    if file_at == "SORA_HOME":
        home.write_text("not a folder")
    else:
        home.mkdir()
        (home / "datasets").write_text("not a folder")
    monkeypatch.setenv("SORA_HOME", str(home))
    assert "the dataset cache must be a folder, but this is a file" in run_cli(capsys, *args).error()
    assert "not a folder" in (home if home.is_file() else home / "datasets").read_text()


# -- data a classifier cannot learn from, and a failing baseline ------------------------------------------


def train_recipe_for(folder, rows):
    (folder / "rows.csv").write_text("text,label\n" + "\n".join(f'"{t}",{label}' for t, label in rows) + "\n")
    recipe = {
        "name": "t",
        "data": {
            "source": str(folder / "rows.csv"),
            "tokenizer": {"kind": "wordpiece", "vocab_size": 40, "min_frequency": 1},
        },
        "model": {
            "arch": "encoder_classifier",
            "vocab_size": 40,
            "n_classes": 2,
            "d_model": 16,
            "max_len": 16,
            "dropout": 0.0,
            "encoder": {"n_layers": 1, "n_heads": 2, "d_ff": 32},
        },
        "train": {"max_steps": 2, "batch_size": 8, "quiet": True},
    }
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return folder / "recipe.yaml"


@fuzz(8)
@example(blank=True, n=8, pad=[""])
@example(blank=False, n=8, pad=[""])
@given(blank=st.booleans(), n=st.integers(8, 24), pad=st.lists(st.sampled_from(["", " ", "  ", "\t"]), min_size=1))
def test_data_no_classifier_can_learn_from_is_refused_before_training(tmp_path_factory, capsys, blank, n, pad):
    folder = tmp_path_factory.mktemp("untrainable")
    rows = [(pad[i % len(pad)], "ab"[i % 2]) for i in range(n)] if blank else [(f"word {i}", "a") for i in range(n)]
    err = run_cli(capsys, "train", train_recipe_for(folder, rows), "--out", folder / "run").error()
    if blank:  # every row is a bad row, named by its line
        assert "rows.csv:2: empty text in column 'text'" in err
    else:
        assert "rows.csv: column" in err and "one class ('a')" in err
    assert not (folder / "run" / "model").exists() and not (folder / "run" / "checkpoints").exists()


def test_a_failing_baseline_keeps_the_trained_model(tmp_path, capsys, monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("empty vocabulary; perhaps the documents only contain stop words")

    monkeypatch.setattr(baseline, "tfidf_logreg", fails)
    rows = [(f"{WORDS['pos' if i % 2 else 'neg'][i % 3]} film", "ab"[i % 2]) for i in range(40)]
    code, _, err = run_cli(capsys, "train", train_recipe_for(tmp_path, rows), "--out", tmp_path / "run")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (
        metrics["baseline"]["unavailable"]
        == "ValueError: empty vocabulary; perhaps the documents only contain stop words"
    )
    assert "test" in metrics and load_model(tmp_path / "run" / "model") is not None
    assert np.isfinite(metrics["test"]["accuracy"])
