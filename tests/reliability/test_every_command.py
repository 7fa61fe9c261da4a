"""Every command, hostile but fair (issue 19, last sweep): what the other reliability tests do not reach.

Hypothesis draws option values (0, negative, huge, empty, NaN, unicode), folders of the wrong kind or
with one file missing, Hugging Face configs with one wrong value, pruning plans and analysis files that
are damaged or belong to another model, and data whose task is not the model's. Every command runs
in-process on a module's world of tiny models and must answer exit 0 with a correct result, or exit 2
with one line naming what is wrong and where (Sora's ``error:``, or click's ``Error:`` for an option out
of its range); a traceback fails, and so does any change under the world outside ``--out`` (inputs,
``SORA_HOME`` and the current folder live there). A file system that refuses writes (``chattr +i``,
when this runs as root) must be one line too.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import event, example, given
from hypothesis import strategies as st

from sora.compress import QuantizeConfig, quantize_model, save_quantized
from sora.data import builtin, prepare_data
from sora.models import load_model, summary
from tests.helpers import Answer, fuzz, run_cli, save_tiny, write_reviews
from tests.reliability.test_generated_input import case
from tests.reliability.test_generated_input import sora as sora_within

pytestmark = pytest.mark.filterwarnings("ignore")

WORDS = {"pos": "good great fine".split(), "neg": "bad dull weak".split()}
BOOK = "the cat sat on the mat. the dog sat on the log.\n" * 8
HEADS = [f"layers.{layer}.attn.head.{h}" for layer in range(2) for h in range(4)]  # the classifier's
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10)  # argv-safe


# ------------------------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny models of every kind a command reads, their data, and the folder the commands run in."""
    root = tmp_path_factory.mktemp("every_command")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("SORA_HOME", str(root / "home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        build_world(root)
        yield root


def build_world(root: Path) -> None:
    torch.manual_seed(0)
    write_reviews(root / "reviews.csv", WORDS, 48)
    cls = {
        "source": str(root / "reviews.csv"),
        "tokenizer": {"kind": "char"},
        "max_len": 32,
        "split": {"validation": 0.25, "test": 0.25, "seed": 0},
    }
    (root / "book.txt").write_text(BOOK)
    lm = {
        "source": str(root / "book.txt"),
        "format": "text",
        "task": "lm",
        "block_size": 16,
        "tokenizer": {"kind": "char", "min_frequency": 1},
    }
    quick = {
        "analyze": {"n_examples": 0, "max_batches": 1, "batch_size": 8},  # no attention figures: seconds
        "compress": {"latency_repeats": 1, "latency_batches": [1], "importance_batches": 1},
    }
    for name, config in (
        ("data.yaml", cls),
        ("lm.yaml", lm),
        ("reviews.yaml", {"data": cls, **quick}),
        ("book.yaml", {"data": lm, **quick}),
    ):
        (root / name).write_text(yaml.safe_dump(config))
    (root / "recipe.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "data": cls,
                "train": {"max_steps": 2, "batch_size": 8, "quiet": True},
                "model": {
                    "arch": "encoder_classifier",
                    "d_model": 16,
                    "vocab_size": 50,
                    "max_len": 32,
                    "n_classes": 2,
                    "encoder": {"n_layers": 1, "n_heads": 2, "d_ff": 16},
                },
                "profiles": {"quick": {"train.max_steps": 1}},
            }
        )
    )
    cls_data, lm_data = prepare_data(cls), prepare_data(lm)
    save_tiny(
        root / "model",
        cls_data,
        norm_position="post",
        embed_norm=True,
        pooling="cls",
        pooler=True,
        activation="gelu_tanh",
    )  # BERT-shaped, so that `hf export` takes it
    save_tiny(root / "lm", lm_data, "decoder_lm")
    save_tiny(root / "s2s", lm_data, "seq2seq")
    int8 = quantize_model(load_model(root / "model"), QuantizeConfig(min_weights=0, min_side=0))
    save_quantized(int8, root / "int8", tokenizer=cls_data.tokenizer, meta={"labels": cls_data.labels})
    for name, args in (
        ("uneven", ["prune", root / "model", "--heads", "layers.0.attn.head.1"]),
        ("nolayers", ["prune", root / "model", "--heads", "layers.0,layers.1"]),
        ("exported", ["hf", "export", root / "model", "--no-verify"]),
    ):
        assert run_cli(None, *args, "--out", root / name).code == 0, name
    (root / "analysis.json").write_text(
        json.dumps(
            {
                "heads": [{"name": name, "gradient": (i % 5) / 5} for i, name in enumerate(HEADS)],
                "neurons": {f"layers.{layer}.ffn": {"taylor": [i / 64 for i in range(64)]} for layer in range(2)},
            }
        )
    )
    shutil.copytree(root / "lm", root / "lm_bos")  # a config.json whose start token the embedding lacks
    config = json.loads((root / "lm_bos" / "config.json").read_text())
    (root / "lm_bos" / "config.json").write_text(json.dumps({**config, "bos_id": 999}))
    (root / "garbage.bin").write_bytes(b"\x89PNG\r\n\x00\xff garbage")
    (root / "empty").mkdir()


def sora(capsys, world: Path, out: Path | None, *args) -> Answer:
    """``sora ARGS...`` in the world (exit 0 or 2, nothing outside ``out`` changed); the exit code is counted in
    hypothesis' statistics (pytest --hypothesis-show-statistics), so a run shows how many were refused."""
    answer = sora_within(capsys, world, out, *args)
    event(f"exit {answer.code}")
    return answer


def refusal(answer: Answer, *names: str, lines: int = 1) -> str:
    """The message of an exit-2 answer: one ``error:`` line (Sora's) or ``Error:`` line (click's, for an
    option value out of its range), the last ``lines`` lines printed, naming one of ``names``."""
    assert answer.code == 2, f"exit {answer.code}; stdout:\n{answer.out[-2000:]}\nstderr:\n{answer.stderr[-3000:]}"
    assert "Traceback" not in answer.out + answer.stderr, answer.stderr[-3000:]
    printed = [line for line in answer.lines if line.strip()]
    starts = [i for i, line in enumerate(printed) if line.startswith(("error:", "Error:"))]
    assert len(starts) == 1 and len(printed) - starts[0] <= lines, answer.stderr[-3000:]
    message = "\n".join(printed[starts[0] :])
    assert not names or any(str(name) in message for name in names), (names, message)
    return message


def args_of(options: dict) -> list:
    """``--option value`` pairs of the options given (None: not given; True: a flag)."""
    return [
        part
        for key, value in options.items()
        if value is not None
        for part in ((key,) if value is True else (key, value))
    ]


# ------------------------------------------------------------------------------- generate

GENERATE = {  # option -> (values it takes, values out of its range)
    "--max-new-tokens": ([1, 6, 70], [0, -1]),
    "--temperature": ([0, 0.7, 1e308, math.inf], [-1, math.nan]),
    "--top-k": ([1, 10**6], [0]),
    "--top-p": ([0, 0.9, 1], [1.5, math.nan]),
    "--samples": ([1, 3], [0]),
    "--beam": ([1, 3], [0]),
    "--seed": ([0, 2**32 - 1], [-1, 2**32, 10**23]),
}
PROMPTS = st.one_of(st.none(), TEXT, st.sampled_from(["", "the cat", "a dog.", "the cat sat " * 8, "héllo ✓ 世界"]))


@st.composite
def option_values(draw, table: dict, required: tuple = ()):
    """Options of ``table`` drawn from the values each takes (or not given, unless ``required``), and in a third
    of the draws one drawn from its values out of range instead: (options, that option or None)."""
    options = {
        key: draw(st.sampled_from(good) if key in required else st.none() | st.sampled_from(good))
        for key, (good, _) in table.items()
    }
    bad = draw(st.sampled_from(sorted(table))) if draw(st.sampled_from([False, False, True])) else None
    if bad is not None:
        options[bad] = draw(st.sampled_from(table[bad][1]))
    return options, bad


@fuzz(40)
@given(
    model=st.sampled_from(["lm"] * 4 + ["s2s"] * 2 + ["model", "int8", "lm_bos", "missing", "garbage.bin"]),
    prompt=PROMPTS,
    drawn=option_values(GENERATE, required=("--max-new-tokens",)),
)
@example(model="s2s", prompt="the cat", drawn=({"--max-new-tokens": 70}, None))  # past the decoder's max_len
@example(model="lm", prompt="the cat sat " * 8, drawn=({"--max-new-tokens": 6, "--samples": 3}, None))
@example(model="lm", prompt="the", drawn=({"--max-new-tokens": 6, "--seed": 10**23}, "--seed"))  # was a traceback
@example(model="lm_bos", prompt="", drawn=({"--max-new-tokens": 6}, None))  # was an IndexError in the embedding
def test_generate_answers_every_option(world, capsys, model, prompt, drawn):
    """Each option at 0, negative, huge, NaN; empty, unicode and over-long prompts; folders that are not a
    language model. A continuation starts with its prompt; a prompt or length the model cannot hold is said."""
    options, bad = drawn
    answer = sora(capsys, world, None, "generate", world / model, *args_of({"--prompt": prompt, **options}))
    if bad:
        refusal(answer, bad)
        return
    if model not in ("lm", "s2s"):
        refusal(answer, world / model, "decoder_lm")
        return
    if answer.code == 2:  # what the model cannot do: sample a translation, beam several samples, an empty prompt
        refusal(answer, "--prompt", "--samples", "--beam")
        return
    samples = options.get("--samples") or 1
    outputs = answer.out.split("--- sample ")[1:] if samples > 1 else [answer.out]
    assert len(outputs) == (samples if model == "lm" and (options.get("--beam") or 1) == 1 else 1), answer.out
    if model == "lm" and prompt and set(prompt) <= set(BOOK) - {"\n"} and len(prompt) <= 64:
        assert all(text.split("\n", 1)[-1 if samples > 1 else 0].startswith(prompt) for text in outputs), answer.out
    if prompt and set(prompt) <= set(BOOK) and len(prompt) + (model == "s2s") > 64:
        assert "warning: --prompt:" in answer.stderr, answer.stderr
    if model == "s2s" and options["--max-new-tokens"] > 63:
        assert "warning: --max-new-tokens" in answer.stderr, answer.stderr


# ------------------------------------------------------------------------------- data

TASKS = ("classification", "lm", "seq2seq", "ctc")
CONFIGS = ["data.yaml", "lm.yaml", "recipe.yaml"]
NAMES = st.sampled_from(CONFIGS * 3 + ["model", "garbage.bin", "empty", "", " ", "nope.yaml"]) | TEXT.filter(
    lambda s: s.strip() not in builtin.registry()
)


@fuzz(40)
@given(
    name=NAMES,
    task=st.none() | st.sampled_from([*TASKS, "", "ner"]),
    limit=st.none() | st.sampled_from([-1, 0, 1, 5, 10**12]),
    examples=st.none() | st.sampled_from([-1, 0, 2]),
)
def test_data_show_answers_every_name_and_option(world, capsys, name, task, limit, examples):
    """`sora data show` on data configs, recipes, folders, binary files and unknown names, with --task,
    --limit and --examples at every edge: the splits it reports hold at most --limit examples each."""
    answer = sora(
        capsys,
        world,
        None,
        "data",
        "show",
        name,
        "--json",
        *args_of({"--task": task, "--limit": limit, "--examples": examples}),
    )
    config, natural = name in CONFIGS, "lm" if name == "lm.yaml" else "classification"
    problems = [
        n
        for n, wrong in (
            ("--examples", (examples or 0) < 0),
            ("limit", limit is not None and limit < 1),
            ("task", task is not None and task not in TASKS),
            (name.strip() or "empty", not config),
            (repr(name)[1:-1], not config),
        )
        if wrong
    ]
    if problems:
        refusal(answer, *problems, lines=len(problems))
    elif answer.code == 0:
        info = json.loads(answer.out)
        assert info["task"] == (task or natural), info["task"]
        assert all(n <= (limit or n) for n in info["splits"].values()), info["splits"]
        if info["task"] == "classification":
            assert len(info["examples"]) == min(3 if examples is None else examples, info["splits"]["train"])
    else:  # a task the file cannot give: a book has no labels, reviews no translations or audio
        assert task not in (None, natural), answer.stderr
        refusal(answer, "reviews.csv", "book.txt", name)


@fuzz(15)
@given(names=st.lists(NAMES.filter(lambda s: s not in builtin.registry()), max_size=3))
def test_data_fetch_refuses_unknown_names_before_any_work(world, capsys, names):
    answer = sora(capsys, world, None, "data", "fetch", *names)
    refusal(answer, *(repr(n) for n in names[:1]), "name a dataset")
    assert not (world / "home").exists()


def test_data_list_names_every_builtin_dataset_uncached(world, capsys):
    answer = sora_within(capsys, world, None, "data", "list", "--json")
    rows = json.loads(answer.out)
    assert [r["name"] for r in rows] == list(builtin.registry()) and not any(r["cached"] for r in rows)


# ------------------------------------------------------------------------------- a model with data not its own

FITS = {"model": "reviews.yaml", "lm": "book.yaml", "s2s": None}  # the data (recipes) each model was made for


@fuzz(8)
@given(
    command=st.sampled_from(["eval", "analyze", "quantize", "compress"]),
    model=st.sampled_from(list(FITS)),
    data=st.sampled_from(["reviews.yaml", "book.yaml"]),
    split=st.none() | st.sampled_from(["train", "validation", "test", "", "nosuch"]),
)
@example(command="quantize", model="lm", data="reviews.yaml", split=None)  # used to measure it on reviews, exit 0
def test_a_model_meets_only_data_of_its_task(world, capsys, command, model, data, split):
    """eval, analyze, quantize --data and compress: data of another task is one line before any work (it
    was a traceback from inside the loss, or for quantize a calibration on the wrong data); --split too."""
    with case(world) as folder:
        out = folder / "out"
        args = {
            "eval": ["--json", *args_of({"--split": split})],
            "analyze": ["--out", out, "--methods", "gradient", "--max-batches", "1", *args_of({"--split": split})],
            "quantize": ["--out", out, "--min-weights", "0", "--min-side", "0"],
            "compress": ["--out", out, "--heads", "0.5"],
        }[command]
        answer = sora(capsys, world, out, command, world / model, "--data", world / data, *args)
        problems = [
            name
            for name, wrong in (
                ("does not fit", FITS[model] != data),
                (f"'{split}'", command in ("eval", "analyze") and split in ("", "nosuch")),
            )
            if wrong
        ]
        if problems:
            refusal(answer, *problems)
        elif command == "eval":
            assert all(math.isfinite(v) for v in json.loads(answer.out)["metrics"].values()), answer.out
        else:
            result = {"analyze": "analysis.json", "quantize": "model.safetensors", "compress": "report.json"}[command]
            assert answer.code == 0 and (out / result).is_file(), answer.stderr[-3000:]


# ------------------------------------------------------------------------------- hf import

HF_KINDS = {
    "bert": ("BertModel", "bert"),
    "bert_classifier": ("BertForSequenceClassification", "bert"),
    "distilbert": ("DistilBertModel", "distilbert"),
    "gpt2": ("GPT2LMHeadModel", "gpt2"),
    "vit": ("ViTForImageClassification", "vit"),
    "sentence": ("BertModel", "bert"),
}
EXTRACTORS = ("bert", "distilbert", "sentence")  # the kinds whose pooling is a choice (--pooling)


@pytest.fixture(scope="module")
def hf(world):
    """Tiny transformers models of every family, saved as transformers saves them (vocab.txt beside the
    BERT-family ones); ``sentence`` is a sentence-transformers folder that pools by mean."""
    hf_models = pytest.importorskip("tests.interop.hf_models")  # needs transformers
    folders = {}
    for kind, (cls_name, model_type) in HF_KINDS.items():
        folders[kind] = folder = world / "hf" / kind
        hf_models.make_hf_model(cls_name, model_type).save_pretrained(folder)
        if model_type in ("bert", "distilbert"):
            (folder / "vocab.txt").write_text("\n".join(hf_models.VOCAB) + "\n")
    sentence = folders["sentence"]
    (sentence / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (sentence / "1_Pooling").mkdir()
    (sentence / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folders


HF_DAMAGE = st.one_of(
    st.just(("intact",)),
    st.just(("empty folder",)),
    st.just(("a file",)),
    st.tuples(
        st.just("missing"),
        st.sampled_from(["config.json", "model.safetensors", "vocab.txt", "modules.json", "1_Pooling/config.json"]),
    ),
    st.tuples(st.just("model_type"), st.sampled_from(["llama", "t5", "", None, 7])),
    st.tuples(st.just("value"), st.integers(0, 10**6), st.sampled_from([-1, 0, 3, 1.5, "x", None, [], True, 10**12])),
)


def damage_hf(source: Path, folder: Path, damage: tuple) -> Path:
    """A copy of ``source`` with ``damage`` done to it; what `hf import` is given."""
    copy = shutil.copytree(source, folder / "hf")
    config = json.loads((copy / "config.json").read_text())
    if damage[0] == "empty folder":
        shutil.rmtree(copy)
        copy.mkdir()
    elif damage[0] == "a file":
        return copy / "config.json"
    elif damage[0] == "missing" and (copy / damage[1]).exists():
        (copy / damage[1]).unlink()
    elif damage[0] == "model_type":
        (copy / "config.json").write_text(json.dumps({**config, "model_type": damage[1]}))
    elif damage[0] == "value":
        keys = sorted(k for k, v in config.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool))
        key = damage[1] if isinstance(damage[1], str) else keys[damage[1] % len(keys)]  # a key, or any scalar's
        (copy / "config.json").write_text(json.dumps({**config, key: damage[2]}))
    return copy


@fuzz(30)
@given(
    kind=st.sampled_from(list(HF_KINDS)),
    damage=HF_DAMAGE,
    pooling=st.none() | st.sampled_from(["mean", "cls", "max", ""]),
)
@example(kind="bert", damage=("value", "vocab_size", 10**12), pooling=None)  # was an allocator's traceback
@example(kind="bert", damage=("value", "layer_norm_eps", "x"), pooling=None)  # was pydantic's traceback
@example(kind="gpt2", damage=("value", "activation_function", []), pooling=None)  # was a TypeError
@example(kind="bert_classifier", damage=("intact",), pooling="mean")  # was imported, wrong, with exit 0
def test_hf_import_answers_every_folder(world, hf, capsys, kind, damage, pooling):
    """Each family with one file missing, an empty folder, a file, an unsupported model_type, one config
    value wrong: a Sora folder that loads, with the pooling asked for, or one line naming the folder."""
    with case(world) as folder:
        source, out = damage_hf(hf[kind], folder, damage), folder / "out"
        answer = sora(
            capsys, world, out, "hf", "import", source, "--out", out, "--no-verify", *args_of({"--pooling": pooling})
        )
        missing = damage[1] if damage[0] == "missing" else None
        problems = [
            name
            for name, wrong in (
                ("pooling", pooling not in (None, "mean", "cls")),
                (
                    source,
                    damage[0] in ("empty folder", "a file", "model_type")
                    or missing in ("config.json", "model.safetensors"),
                ),
                ("--pooling", pooling is not None and kind not in EXTRACTORS),
                (source, damage[0] == "value" and answer.code == 2),
            )
            if wrong
        ]  # config.json, or weights not matching it
        if problems:
            refusal(answer, *problems, lines=len(problems))
        else:
            assert answer.code == 0, answer.stderr[-3000:]
            meta = json.loads((out / "meta.json").read_text())
            assert meta["source"]["architecture"] == HF_KINDS[kind][0]
            expected = pooling or ("mean" if kind == "sentence" and missing != "1_Pooling/config.json" else "cls")
            assert kind not in EXTRACTORS or load_model(out).config.pooling == expected
            assert (meta["tokenizer"]["from"] is None) == (missing == "vocab.txt" or kind in ("gpt2", "vit"))


# ------------------------------------------------------------------------------- hf export


@fuzz(16)
@given(
    model=st.sampled_from(["model", "lm", "uneven", "nolayers", "int8", "s2s", "empty", "garbage.bin"]),
    body_only=st.booleans(),
    one_segment=st.booleans(),
    as_json=st.booleans(),
)
@example(model="nolayers", body_only=False, one_segment=False, as_json=False)  # was an IndexError
def test_hf_export_answers_every_model_and_option(world, capsys, model, body_only, one_segment, as_json):
    """What transformers can hold is written (its config names the family); what it cannot (pruned
    unevenly, no layers left, int8, seq2seq, not a model) is one line naming the folder."""
    with case(world) as folder:
        out = folder / "out"
        flags = {"--body-only": body_only or None, "--one-segment": one_segment or None, "--json": as_json or None}
        answer = sora(capsys, world, out, "hf", "export", world / model, "--out", out, "--no-verify", *args_of(flags))
        if model == "lm" and body_only:
            refusal(answer, "--body-only")
        elif model not in ("model", "lm"):
            refusal(answer, world / model)
        else:
            assert answer.code == 0, answer.stderr[-3000:]
            config = json.loads((out / "config.json").read_text())
            assert config["model_type"] == {"model": "bert", "lm": "gpt2"}[model]
            if as_json:
                assert json.loads(answer.out)["architecture"] == config["architectures"][0]


# ------------------------------------------------------------------------------- prune

PARTICLES = st.sampled_from(
    HEADS
    + [
        "layers.0.attn.head.9",
        "layers.5.attn.head.0",
        "layers.0.ffn.neuron.63",
        "layers.0.ffn.neuron.64",
        "layers.0.ffn.neuron.-1",
        "layers.0",
        "layers.1.ffn",
        "layers.0.attn",
        "embed.tokens",
        "head",
        "nonsense",
        "",
    ]
)
NAMED = st.one_of(
    st.lists(st.sampled_from(HEADS + ["layers.0", "layers.1.ffn", "layers.0.ffn.neuron.7"]), max_size=4),
    st.lists(PARTICLES, min_size=1, max_size=3),
).map(",".join)  # particles that exist, or any
FRACTIONS = {option: ([0, 0.25, 0.5, 1], [1.5, -0.1, math.nan]) for option in ("--fraction", "--neurons", "--sparsity")}
PLANS = st.one_of(
    st.binary(max_size=16),
    st.fixed_dictionaries(
        {},
        optional={
            "remove": st.lists(PARTICLES, max_size=3),
            "zz_unknown": st.just(1),
            "scope": st.sampled_from(["global", "per_layer", "sideways"]),
            **{
                key.removeprefix("--").replace("fraction", "heads"): st.sampled_from(sum(values, []))
                for key, values in FRACTIONS.items()
            },
        },
    ),
)
SCORES = st.none() | st.sampled_from(["good", "truncated", "garbage", "foreign", "strings", "list", "missing"])


def scores_file(world: Path, folder: Path, kind: str | None, at: float) -> Path | None:
    """analysis.json as `sora analyze` writes it, or damaged: cut at ``at``, garbage bytes, another model's
    heads, scores of the wrong type, a list, or missing."""
    if kind is None:
        return None
    good = (world / "analysis.json").read_text()
    data, path = json.loads(good), folder / "analysis.json"
    heads = {
        "foreign": lambda h: {**h, "name": h["name"].replace("layers.", "layers.7")},
        "strings": lambda h: {**h, "gradient": "high"},
    }
    if kind == "garbage":
        path.write_bytes(b"\x00\xff\xfe" + good.encode()[:40])
    elif kind == "truncated":
        path.write_text(good[: int(at * len(good))])
    elif kind in heads:
        path.write_text(json.dumps({**data, "heads": [heads[kind](h) for h in data["heads"]]}))
    elif kind != "missing":
        path.write_text(json.dumps({"good": data, "list": [1, 2]}[kind]))
    return path


@fuzz(40)
@given(
    heads=st.none() | NAMED,
    drawn=option_values(FRACTIONS),
    scope=st.sampled_from([None, "--global", "--per-layer"]),
    scores=SCORES,
    at=st.floats(0, 1),
    plan=st.one_of(st.none(), st.none(), PLANS),
    alone=st.booleans(),
)
@example(heads=",".join(HEADS[:4]), drawn=({}, None), scope=None, scores=None, at=0, plan=None, alone=False)
@example(heads=None, drawn=({"--fraction": 0.5}, None), scope=None, scores="garbage", at=0, plan=None, alone=False)
def test_prune_answers_every_option_combination(world, capsys, heads, drawn, scope, scores, at, plan, alone):
    """--heads naming particles that exist or not, --fraction/--neurons/--sparsity at 0, 1, 1.5, -0.1,
    NaN, --scores damaged or foreign, --plan generated (or garbage bytes): a pruned model that reloads with
    the heads asked for, or one line naming the option, particle or file."""
    (fractions, bad), key = drawn, {"--fraction": "heads", "--neurons": "neurons", "--sparsity": "sparsity"}
    if plan is not None and alone:  # the plan says it all (otherwise: with options it conflicts with)
        heads, fractions, bad = None, {}, None
    with case(world) as folder:
        out, plan_file = folder / "out", None
        if plan is not None:
            plan_file = folder / "plan.yaml"
            plan_file.write_bytes(plan if isinstance(plan, bytes) else yaml.safe_dump(plan).encode())
        options = {
            "--heads": heads,
            **fractions,
            "--scores": scores_file(world, folder, scores, at),
            "--plan": plan_file,
        }
        answer = sora(
            capsys, world, out, "prune", world / "model", "--out", out, *args_of(options), *([scope] if scope else [])
        )
        if plan is not None and (heads or any(v is not None for v in fractions.values())):
            refusal(answer, "--plan")
        elif bad:
            refusal(answer, key[bad])
        elif answer.code == 2:
            refusal(answer, "--heads", "nothing to prune", "scores", "analysis.json", "plan.yaml", "particle", lines=5)
        else:
            pruned = load_model(out)  # from its folder alone
            named = set((heads or "").split(","))
            if named <= set(HEADS) and plan is None and not any(fractions.values()):
                assert summary(pruned)["heads"] == len(HEADS) - len(named - {""})
            ids = torch.randint(0, pruned.config.vocab_size, (2, 12))
            assert torch.isfinite(pruned(ids, torch.ones_like(ids, dtype=torch.bool))).all()


# ------------------------------------------------------------------------------- quantize and compress


@fuzz(12)
@given(
    model=st.sampled_from(["model", "lm", "int8", "uneven", "nolayers", "empty"]),
    options=st.fixed_dictionaries(
        {
            "--min-weights": st.none() | st.sampled_from([0, -1, 10**20]),
            "--min-side": st.none() | st.sampled_from([0, 10**6]),
            "--activations": st.none() | st.sampled_from(["tensor", "row", "", "column"]),
            "--sensitive": st.none() | st.sampled_from([-1, 0, 2, 1000]),
            "--sensitive-as": st.none() | st.sampled_from(["row", "fp32", "int4"]),
            "--data": st.none() | st.sampled_from(["reviews.yaml", "book.yaml", "garbage.bin", "nope.yaml"]),
            "--no-embeddings": st.none() | st.just(True),
        }
    ),
)
def test_quantize_answers_every_option(world, capsys, model, options):
    """Counts below 0 or past any model, unknown choices, data of another task or none at all: an int8
    folder that reloads, or one line naming the option, file or folder."""
    with case(world) as folder:
        out = folder / "out"
        given_ = {**options, "--data": world / options["--data"] if options["--data"] else None}
        answer = sora(capsys, world, out, "quantize", world / model, "--out", out, *args_of(given_))
        data = options["--data"]
        problems = [
            name
            for name, wrong in (
                ("--min-weights", (options["--min-weights"] or 0) < 0),
                ("--sensitive", (options["--sensitive"] or 0) < 0),
                (world / model, model in ("int8", "empty")),
                ("activations", options["--activations"] not in (None, "tensor", "row")),
                ("sensitive_as", options["--sensitive-as"] not in (None, "row", "fp32")),
                (data, data in ("garbage.bin", "nope.yaml")),
                ("does not fit", data in ("reviews.yaml", "book.yaml") and FITS.get(model, "reviews.yaml") != data),
            )
            if wrong
        ]
        if problems:
            refusal(answer, *problems, lines=len(problems))
        else:
            assert answer.code == 0, answer.stderr[-3000:]
            assert load_model(out).config.quantization["method"]


@fuzz(6)
@given(
    heads=st.none() | st.sampled_from([0.5, 1.5]),
    steps=st.none() | st.sampled_from([0, 2]),
    finetune=st.none() | st.sampled_from([0, 0.5]),
    distill=st.none() | st.sampled_from([0.5, 2]),
    config=st.none()
    | st.sampled_from(["prune: 5\n", "quantize: {sensitive: -1}\n", "zz_unknown: 1\n", "- 1\n", "\x00\xff"]),
)
def test_compress_answers_every_option(world, capsys, heads, steps, finetune, distill, config):
    with case(world) as folder:
        out, config_file = folder / "out", None
        if config is not None:
            config_file = folder / "compress.yaml"
            config_file.write_bytes(config.encode("latin-1"))
        options = {
            "--heads": heads,
            "--steps": steps,
            "--finetune": finetune,
            "--distill": distill,
            "--config": config_file,
        }
        answer = sora(
            capsys,
            world,
            out,
            "compress",
            world / "model",
            "--data",
            world / "reviews.yaml",
            "--out",
            out,
            *args_of(options),
        )
        problems = [
            name
            for name, wrong in (
                (config_file, config is not None),
                ("heads", heads == 1.5),
                ("--steps", steps == 0),
                ("epochs", finetune == 0),
                ("distill", distill == 2),
            )
            if wrong
        ]
        if problems:
            refusal(answer, *problems, lines=len(problems))
        elif answer.code == 0:
            report = json.loads((out / "report.json").read_text())
            assert {"fp32", "int8"} <= set(report["variants"]), report["variants"]
        else:
            refusal(answer, "distill", "finetune", lines=3)  # --distill without fine-tuning


# ------------------------------------------------------------------------------- analyze, inspect, run


@fuzz(5)
@given(
    split=st.none() | st.sampled_from(["train", "", "nosuch"]),
    methods=st.sampled_from(["gradient", "gradient,gradient", "nosuch", "ablation"]),
    batch_size=st.none() | st.sampled_from([0, 1, 10**6]),
    ablation=st.none() | st.sampled_from(["mean", "nosuch"]),
    data=st.sampled_from(["reviews.yaml", "garbage.bin", "model/model.safetensors"]),
    example_=st.none() | st.sampled_from(["", "héllo ✓ 世界"]),
)
def test_analyze_answers_every_option(world, capsys, split, methods, batch_size, ablation, data, example_):
    with case(world) as folder:
        out = folder / "out"
        options = {
            "--split": split,
            "--methods": methods,
            "--batch-size": batch_size,
            "--ablation": ablation,
            "--example": example_,
            "--max-batches": 1,
        }
        answer = sora(
            capsys, world, out, "analyze", world / "model", "--data", world / data, "--out", out, *args_of(options)
        )
        problems = [
            name
            for name, wrong in (
                ("--batch-size", batch_size == 0),
                (world / data, data != "reviews.yaml"),
                ("methods", methods == "nosuch"),
                ("ablation", ablation == "nosuch"),
                (f"'{split}'", split in ("", "nosuch")),
            )
            if wrong
        ]
        if problems:
            refusal(answer, *problems, lines=len(problems))
        else:
            assert answer.code == 0, answer.stderr[-3000:]
            assert json.loads((out / "analysis.json").read_text())["baseline"]


@fuzz(25)
@given(
    path=st.sampled_from(
        [
            "model",
            "lm",
            "s2s",
            "int8",
            "uneven",
            "nolayers",
            "recipe.yaml",
            "model/config.json",
            "exported",
            "data.yaml",
            "garbage.bin",
            "empty",
            "",
            "nope",
            "model/model.safetensors",
        ]
    ),
    flag=st.sampled_from([None, "--json", "--mermaid"]),
)
def test_inspect_answers_any_path(world, capsys, path, flag):
    """A model folder (fp32, int8, pruned to no layers), a recipe or model config; a Hugging Face folder,
    a data config, garbage, an empty folder, nothing: the particles, or one line naming the path."""
    answer = sora(capsys, world, None, "inspect", world / path if path else "", *([flag] if flag else []))
    if path in ("exported", "data.yaml", "garbage.bin", "empty", "", "nope", "model/model.safetensors"):
        refusal(answer, world / path if path else ".")
    elif flag == "--json":
        report = json.loads(answer.out)
        assert report["summary"]["parameters"] > 0 and report["particles"]
    else:
        assert answer.code == 0 and answer.out.strip(), answer.stderr


@fuzz(4)
@given(command=st.sampled_from(["run", "train"]), profile=st.sampled_from(["quick", ""]) | TEXT)
def test_run_and_train_answer_every_profile(world, capsys, command, profile):
    with case(world) as folder:
        out = folder / "out"
        answer = sora(capsys, world, out, command, world / "recipe.yaml", "--out", out, "--profile", profile)
        if profile in ("quick", ""):
            assert answer.code == 0, answer.stderr[-3000:]
            steps = json.loads((out / "metrics.json").read_text())["train"]["steps"]
            assert steps == (1 if profile else 2)
        else:
            refusal(answer, repr(profile))
            assert not out.exists()


# ------------------------------------------------------------------------------- a file system that refuses


@contextmanager
def immutable(folder: Path):
    """``folder`` made immutable (``chattr +i``: not even root may add to it); skips where that is not possible."""
    folder.mkdir(exist_ok=True)
    if (
        os.geteuid() != 0
        or shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0
    ):
        pytest.skip("needs root and chattr on a file system that supports it")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


WRITERS = {
    "prune": ["prune", "model", "--heads", "layers.0.attn.head.1"],
    "quantize": ["quantize", "model"],
    "hf export": ["hf", "export", "model", "--no-verify"],
    "hf import": ["hf", "import", "exported", "--no-verify"],
    "analyze": ["analyze", "model", "--data", "reviews.yaml", "--methods", "gradient"],
    "compress": ["compress", "model", "--data", "reviews.yaml"],
    "train": ["train", "recipe.yaml"],
    "run": ["run", "recipe.yaml"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_an_out_whose_folder_refuses_writes_is_one_line(world, capsys, command):
    """No permission to write in --out's folder: one line naming --out (was a PermissionError traceback)."""
    with case(world) as folder, immutable(folder / "locked") as locked:
        out = locked / "new"
        answer = sora_within(capsys, world, out, *WRITERS[command], "--out", out)
        refusal(answer, out)
        assert not out.exists()


@pytest.mark.parametrize("home", ["a file", "under a file", "immutable"])
@pytest.mark.parametrize("command", [["data", "show", "austen", "--limit", "2"], ["data", "fetch", "austen"]])
def test_a_sora_home_that_cannot_hold_the_cache_is_one_line(world, capsys, monkeypatch, home, command):
    with case(world) as folder:
        place = {"a file": folder / "home", "under a file": folder / "home" / "cache", "immutable": folder / "home"}
        if home != "immutable":
            (folder / "home").write_text("not a folder")
        monkeypatch.setenv("SORA_HOME", str(place[home]))
        with immutable(folder / "home") if home == "immutable" else nullcontext():
            answer = sora_within(capsys, world, None, *command)
            refusal(answer, folder / "home")
