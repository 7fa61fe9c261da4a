"""Generated bad input, end to end: recipes, ``--set`` overrides and data files through the real commands.

Hypothesis writes the inputs (derandomized, so every run tries the same ones) and each one runs the
command in-process through ``sora.cli.main``. Every command must answer exit 0 with a correct result, or
exit 2 with one ``error:`` line naming what is wrong and where. An uncaught exception (a traceback) fails
the test, and so does any change under the working folder outside ``--out`` (``SORA_HOME`` and the
current directory live there too).

Recipe mutations come from the recipe's own JSON schema, so a key added to any config is fuzzed without
touching this file. Data files are generated with a model of what each row is (good, or bad and why), so
the answer can be checked exactly: every row is used or reported, never dropped without a word.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from sora.recipe import Recipe
from tests.helpers import Answer, fuzz, run_cli_within

# Sora's own warnings are checked where the command prints them (stderr); others (torch's) are not the subject
pytestmark = pytest.mark.filterwarnings("ignore")


# ------------------------------------------------------------------ running a command


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The test's working folder: current directory and SORA_HOME, so that no write escapes the check."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SORA_HOME", str(tmp_path / "home"))
    return tmp_path


@contextmanager
def case(sandbox: Path):
    """A fresh folder for one generated example, removed afterwards (the next one starts clean)."""
    folder = Path(tempfile.mkdtemp(dir=sandbox))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sora(capsys, sandbox: Path, out: Path, *args) -> Answer:
    """Run ``sora ARGS...``: exit 0 or 2 only, and nothing under ``sandbox`` outside ``out`` touched."""
    answer = run_cli_within(capsys, sandbox, out, *args)
    assert answer.code in (0, 2), f"exit {answer.code}; stderr:\n{answer.stderr[-3000:]}"
    return answer


# ------------------------------------------------------------------ recipes from the schema

SCHEMA = Recipe.model_json_schema()
UNKNOWN = "zz_unknown"


def alternatives(node: dict) -> list[dict]:
    """The concrete schemas a node allows: ``$ref`` followed, ``anyOf`` flattened."""
    if "$ref" in node:
        return alternatives(SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]])
    if "anyOf" in node:
        return [a for alt in node["anyOf"] for a in alternatives(alt)]
    return [node]


def schema_fields(node: dict = SCHEMA, prefix: tuple = ()) -> list[tuple[tuple, dict]]:
    """(key path, schema) of every key any config section knows, at every depth."""
    found = []
    for alt in alternatives(node):
        for key, sub in alt.get("properties", {}).items():
            found.append((prefix + (key,), sub))
            found.extend(schema_fields(sub, prefix + (key,)))
    return found


FIELDS = schema_fields()
SECTIONS = [()] + [path for path, sub in FIELDS if any("properties" in a for a in alternatives(sub))]
FREE_FORM = {
    path
    for path, sub in FIELDS  # mappings of any keys: storage_options, columns, profiles, ...
    if any(a.get("type") == "object" and "properties" not in a for a in alternatives(sub))
}


def bad_values(node: dict) -> list:
    """Values the schema forbids at ``node``: another type, past a bound, outside the choices, not finite."""
    alts = alternatives(node)
    types = {a.get("type") for a in alts}
    bad = [] if "string" in types and not any("enum" in a for a in alts) else ["twelve"]
    bad += [] if "array" in types else [[1, "two"]]
    bad += [] if "object" in types else [{"zz": 1}]
    bad += [] if "null" in types else [None]
    bad += [] if types & {"integer", "number"} else [3]
    for a in alts:
        if a.get("type") in ("integer", "number"):
            bad += [math.nan, math.inf, -math.inf] + ([1.5] if a["type"] == "integer" else [])
            bad += [a["minimum"] - 1] if "minimum" in a else []
            bad += [a["exclusiveMinimum"]] if "exclusiveMinimum" in a else []
            bad += [] if "minimum" in a or "exclusiveMinimum" in a else [-1]  # no size, count or seed is negative
            bad += [a["maximum"] + 1] if "maximum" in a else []
            bad += [a["exclusiveMaximum"]] if "exclusiveMaximum" in a else []
        if a.get("type") == "array" and a.get("minItems"):
            bad += [[]]
    return bad


REVIEW_WORDS = {"pos": "a fine warm funny film", "neg": "a dull flat boring mess"}


def reviews(n: int = 24) -> str:
    """A small CSV whose words give the label away."""
    labels = ["pos" if i % 2 else "neg" for i in range(n)]
    return "label,text\n" + "".join(f"{label},{REVIEW_WORDS[label]} {i}\n" for i, label in enumerate(labels))


def base_recipe(data_file: Path) -> dict:
    """The smallest complete recipe: every section, a model of a few thousand weights, two steps."""
    return {
        "name": "fuzz",
        "model": {
            "arch": "encoder_classifier",
            "vocab_size": 50,
            "d_model": 16,
            "max_len": 64,
            "dropout": 0.0,
            "encoder": {"n_layers": 1, "n_heads": 2, "d_ff": 16},
            "n_classes": 2,
        },
        "data": {
            "source": str(data_file),
            "tokenizer": {"kind": "char", "min_frequency": 1},
            "split": {"validation": 0.2, "test": 0.2, "seed": 0},
        },
        "train": {"max_steps": 2, "batch_size": 8, "quiet": True, "threads": 1, "seed": 0},
        "analyze": {"max_batches": 1, "batch_size": 8, "pruning_seeds": 1, "pruning_steps": 2, "n_examples": 1},
        "compress": {
            "importance_batches": 1,
            "latency_repeats": 1,
            "latency_batches": [1],
            "quantize": {"calibration_batches": 1},
        },
        "profiles": {"quick": {"train.max_steps": 1}},
    }


def paths_of(tree: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested mapping."""
    found = []
    for key, value in tree.items():
        found.append(prefix + (key,))
        if isinstance(value, dict):
            found.extend(paths_of(value, prefix + (key,)))
    return found


def put(tree: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        if not isinstance(tree.get(key), dict):
            tree[key] = {}
        tree = tree[key]
    tree[path[-1]] = value


def drop(tree: dict, path: tuple) -> None:
    for key in path[:-1]:
        tree = tree[key]
    del tree[path[-1]]


BASE_PATHS = paths_of(base_recipe(Path("x.csv")))


def write_recipe(folder: Path, change=lambda recipe: recipe) -> Path:
    """The base recipe, changed by ``change``, and its data, written in ``folder``; the recipe's path."""
    data = folder / "reviews.csv"
    data.write_text(reviews())
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(change(base_recipe(data))))
    return recipe


@dataclass
class Mutation:
    """One change to the base recipe, and whether the recipe must then be refused."""

    kind: str  # wrong | missing | unknown
    path: tuple
    value: object = None
    must_fail: bool = True

    def apply(self, recipe: dict) -> dict:
        recipe = copy.deepcopy(recipe)
        if self.kind == "missing":
            drop(recipe, self.path)
        else:
            put(recipe, self.path, self.value)
        return recipe

    @property
    def key(self) -> str:
        """The key the error must name."""
        return str(self.path[-1])

    @property
    def lines(self) -> int:
        """Lines the error may take: one per problem; a section the change creates may lack a required key."""
        return 1 if len(self.path) == 1 or self.path[:-1] in BASE_PATHS else 2


def mutations(under: tuple = ()) -> st.SearchStrategy[Mutation]:
    """Wrong values (type, range, choice), missing keys and unknown keys, anywhere below ``under``."""
    fields = [(p, s) for p, s in FIELDS if p[: len(under)] == under and p[0] != "profiles"]
    wrong = st.sampled_from(fields).flatmap(
        lambda f: st.sampled_from(bad_values(f[1])).map(lambda v, p=f[0]: Mutation("wrong", p, v))
    )
    missing = st.sampled_from([p for p in BASE_PATHS if p[: len(under)] == under and p != under]).map(
        lambda p: Mutation("missing", p, must_fail=False)
    )
    unknown = st.sampled_from([p for p in SECTIONS + sorted(FREE_FORM) if p[: len(under)] == under]).map(
        lambda p: Mutation("unknown", p + (UNKNOWN,), 1, must_fail=p not in FREE_FORM)
    )
    return st.one_of(wrong, missing, unknown)


def check_refusal(answer: Answer, mutation: Mutation, source: Path) -> None:
    """Exit 2 whose one line names the key, and the file and line when the key is in the file."""
    line = answer.error(mutation.lines)
    assert mutation.key in line, line
    if mutation.kind != "missing":
        assert re.search(rf"{re.escape(str(source))}:\d+: ", line), line
    if mutation.kind == "unknown" and mutation.must_fail:
        assert "unknown key" in line or "unknown role" in line, line


@fuzz(80)
@given(mutation=mutations())
def test_train_answers_every_recipe_mutation(sandbox, capsys, mutation):
    """`sora train` on the base recipe with one key changed, removed or added, at any depth."""
    with case(sandbox) as folder:
        recipe = write_recipe(folder, mutation.apply)
        answer = sora(capsys, sandbox, folder / "out", "train", recipe, "--out", folder / "out")
        if answer.code == 0:
            assert not mutation.must_fail, f"{mutation} was accepted"
            metrics = json.loads((folder / "out" / "metrics.json").read_text())
            assert metrics["train"]["steps"] <= 2 and (folder / "out" / "model" / "model.safetensors").is_file()
        else:
            check_refusal(answer, mutation, recipe)


@fuzz(120)
@given(mutation=mutations(under=("model",)))
def test_inspect_answers_every_model_config(sandbox, capsys, mutation):
    """`sora inspect` on a model config (no data, no training) with one key changed, removed or added."""
    with case(sandbox) as folder:
        config = folder / "model.yaml"
        model = mutation.apply(base_recipe(folder / "x.csv"))["model"]
        config.write_text(yaml.safe_dump(model))
        answer = sora(capsys, sandbox, folder / "out", "inspect", config, "--json")
        if answer.code == 0:
            assert not mutation.must_fail, f"{mutation} was accepted"
            report = json.loads(answer.out)
            assert report["summary"]["parameters"] > 0 and report["particles"]
        else:
            line = answer.error(mutation.lines)
            assert mutation.key in line and str(config) in line, line


def small_values(node: dict) -> list:
    """Values a config may well accept, kept small so that a stage that runs them stays quick."""
    values = [None, 0, 1, 2, 0.0, 0.5, 1.0, "", "validation", [], [1]]
    for a in alternatives(node):
        values += list(a.get("enum", []))
    return values


STAGE_FIELDS = [
    (p, s)
    for p, s in FIELDS
    if p[0] in ("analyze", "compress") and len(p) > 1 and not any("properties" in a for a in alternatives(s))
]


@fuzz(4)
@given(
    change=st.sampled_from(STAGE_FIELDS).flatmap(
        lambda f: st.sampled_from(small_values(f[1])).map(lambda v, p=f[0]: Mutation("wrong", p, v, must_fail=False))
    )
)
@example(change=Mutation("wrong", ("analyze", "ablation"), "mean", must_fail=False))  # two that run every stage
@example(change=Mutation("wrong", ("compress", "prune", "neurons"), 0.5, must_fail=False))
def test_run_answers_analyze_and_compress_values(sandbox, capsys, change):
    """`sora run` (train, analyze, compress) with one analyze/compress key set to a plausible value."""
    with case(sandbox) as folder:
        recipe = write_recipe(folder, change.apply)
        answer = sora(capsys, sandbox, folder / "out", "run", recipe, "--out", folder / "out")
        if answer.code == 0:
            assert (folder / "out" / "analysis" / "analysis.json").is_file()
            assert json.loads((folder / "out" / "compressed" / "report.json").read_text())
        else:
            assert any(word in answer.error() for word in (change.key, "compress", "analy")), answer.stderr


# ------------------------------------------------------------------ whole recipe files and --set

MALFORMED_YAML = [
    "[unclosed",
    "{a: ",
    "a: b: c",
    "!!python/object/apply:os.system ['true']",
    "'",
    '"',
    "@x",
    "`x",
    "*undefined",
    "&a [*b]",
    "{",
    "]",
    "[1, 2",
    "!!binary ?",
    "- a\n b: c",
    "%TAG",
    "!!int x",
    "!!float nope",
    "? [a]\n: b",
    "a\tb: c",
]
DIGITLESS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Nd")), max_size=10)  # no big numbers


@fuzz(40)
@given(
    content=st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [
                "",
                "\n",
                "# only a comment\n",
                "[1, 2]\n",
                "- name: x\n",
                "just a string\n",
                "42\n",
                "null\n",
                "~\n",
                "name: x\nname: y\n",
                "\ufeffname: x\n",
            ]
            + MALFORMED_YAML
        ).map(str.encode),
        st.sampled_from(["name: café\n", "name: \xff\xfe\n"]).map(lambda s: s.encode("latin-1")),
        st.sampled_from(["name: x\n"]).map(lambda s: s.encode("utf-16")),
    )
)
def test_train_refuses_whole_files_that_are_not_recipes(sandbox, capsys, content):
    """Binary, non-UTF-8, empty, list- or scalar-valued, malformed: one line naming the file."""
    with case(sandbox) as folder:
        recipe = folder / "recipe.yaml"
        recipe.write_bytes(content)
        answer = sora(capsys, sandbox, folder / "out", "train", recipe, "--out", folder / "out")
        assert str(recipe) in answer.error() and not (folder / "out").exists()


def _leaf_paths() -> list[str]:
    """Dotted paths of the base recipe's values (what --set most often names)."""
    recipe = base_recipe(Path("x.csv"))
    leaves = []
    for path in BASE_PATHS:
        value = recipe
        for key in path:
            value = value[key]
        if not isinstance(value, dict) and path[0] != "profiles":
            leaves.append(".".join(path))
    return leaves


LEAVES = _leaf_paths()
SET_PATHS = st.one_of(
    st.sampled_from(LEAVES),  # existing keys
    st.sampled_from(LEAVES).map(lambda p: p + ".deeper"),  # indexing into a scalar
    st.sampled_from(LEAVES).map(lambda p: p + ".0"),
    st.lists(st.sampled_from(["model", "train", "x", "", "0", "encoder", "-"]), min_size=1, max_size=6).map(".".join),
    DIGITLESS,  # anything at all
)
SET_VALUES = st.one_of(
    st.sampled_from(MALFORMED_YAML),
    DIGITLESS,
    st.sampled_from(["[]", "{}", "null", ".nan", "-.inf", "[a, b]", "{x: 1}", "true"]),
)


@fuzz(60)
@given(
    items=st.lists(st.tuples(SET_PATHS, SET_VALUES), min_size=1, max_size=2),
    separator=st.sampled_from(["=", "=", "", "==", " = "]),
)
def test_train_answers_every_set_override(sandbox, capsys, items, separator):
    """`--set PATH=VALUE`: existing, unknown, too deep, into scalars; values malformed or of the wrong type."""
    with case(sandbox) as folder:
        recipe = write_recipe(folder)
        sets = [arg for path, value in items for arg in ("--set", f"{path}{separator}{value}")]
        answer = sora(capsys, sandbox, folder / "out", "train", recipe, "--out", folder / "out", *sets)
        if answer.code == 0:
            assert (folder / "out" / "model" / "model.safetensors").is_file()
        else:
            line = answer.error(len(items))
            assert "--set" in line or str(recipe) in line or "data" in line or "model" in line, line


# ------------------------------------------------------------------ data files

HUGE = "x" * 140_000  # past the csv module's default field limit (131,072 characters)
LABELS = ["pos", "neg", "meh", " pos", "neg "]  # spaces around a label are not part of it
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1"]
CSV_KINDS = ["good", "good", "good", "few", "many", "no_label"]
JSONL_KINDS = [
    "good",
    "good",
    "good",
    "extra",
    "bad_json",
    "not_object",
    "null_text",
    "list_text",
    "no_label",
    "list_label",
    "nan_label",
    "blank_label",
]
HEADERS = {
    "plain": ["label", "text"],
    "extra": ["label", "text", "note"],
    "no_text": ["label", "body"],
    "twice": ["label", "text", "text"],
}


def characters(encoding: str, exclude: str = "") -> st.SearchStrategy[str]:
    """What a field may hold: any Unicode, or in a latin-1 file ASCII and accented letters (U+00C0-U+00FF,
    whose bytes are never valid UTF-8 there, so a row holding one must be reported)."""
    if encoding == "latin-1":
        return st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.characters(
            min_codepoint=0xC0, max_codepoint=0xFF
        )
    return st.characters(exclude_categories=("Cs",), exclude_characters=exclude)


@dataclass
class DataFile:
    """A generated data file and what reading it must give."""

    path: Path
    encoding: str
    rows: int = 0  # data rows written (blank lines are not rows)
    bad: list[int] = field(default_factory=list)  # lines of the rows that must be reported
    labels: set[str] = field(default_factory=set)  # labels of the good rows
    refuse: str | None = None  # what the error must say when the whole file is unusable
    text: list[str] = field(default_factory=list)

    def add(self, line: str, *, bad: bool = False, label: str | None = None) -> None:
        """Append one row that starts on a new line."""
        if bad or (self.encoding == "latin-1" and not line.isascii()):
            self.bad.append(self.line)
        elif label is not None:
            self.labels.add(label.strip())
        self.rows += 1
        self.text.append(line)

    @property
    def line(self) -> int:
        """The line the next row starts on, counted as the readers count (\\r\\n, \\r or \\n end a line)."""
        return len(re.findall(r"\r\n|\r|\n", "".join(self.text))) + 1

    def write(self) -> DataFile:
        self.path.write_bytes("".join(self.text).encode(self.encoding))
        return self


def csv_record(fields: list[str], delimiter: str, eol: str) -> str:
    buffer = io.StringIO()
    # with \n line ends a lone \r in a field is only safe quoted: csv quotes the characters of its terminator
    quoting = csv.QUOTE_MINIMAL if eol == "\r\n" else csv.QUOTE_ALL
    csv.writer(buffer, delimiter=delimiter, lineterminator=eol, quoting=quoting).writerow(fields)
    return buffer.getvalue()


def jsonl_record(kind: str, label: str, text: str) -> str:
    value = {
        "good": {"label": label, "text": text},
        "extra": {"label": label, "text": text, "note": [1]},
        "null_text": {"label": label, "text": None},
        "list_text": {"label": label, "text": [text]},
        "no_label": {"text": text},
        "list_label": {"label": [label], "text": text},
        "nan_label": {"label": math.nan, "text": text},
        "blank_label": {"label": "  ", "text": text},
        "not_object": [label, text],
    }.get(kind)
    return '{"label": "pos", "text": ' if value is None else json.dumps(value, ensure_ascii=False)


@st.composite
def data_files(draw, folder: Path) -> DataFile:
    """A CSV, TSV or JSONL file in any encoding: good rows, bad rows of every kind, blank lines, odd headers."""
    fmt = draw(st.sampled_from(["csv", "tsv", "jsonl"]))
    f = DataFile(folder / f"data.{fmt}", draw(st.sampled_from(ENCODINGS)))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(CSV_KINDS if fmt != "jsonl" else JSONL_KINDS),
                st.sampled_from(LABELS),
                st.text(characters(f.encoding), max_size=12),
                st.booleans(),
            ),
            max_size=10,
        )
    )
    if rows and draw(st.sampled_from([False] * 5 + [True])):  # one huge field (encoding it costs 0.3 s)
        rows[0] = (*rows[0][:2], HUGE, rows[0][3])
    header = "plain" if fmt == "jsonl" else draw(st.sampled_from(list(HEADERS)))
    delimiter = "\t" if fmt == "tsv" else ","
    if fmt != "jsonl":
        f.text.append(csv_record(HEADERS[header], delimiter, eol))
    for kind, label, text, blank_before in rows:
        if blank_before:
            f.text.append(eol)
        if fmt == "jsonl":
            blank = not text.strip()  # an empty text is a bad row
            f.add(jsonl_record(kind, label, text) + eol, bad=kind not in ("good", "extra") or blank, label=label)
            continue
        extra = ["n"] * (len(HEADERS[header]) - 2)
        fields = {
            "good": [label, text] + extra,
            "few": ["pos"],
            "many": [label, text, "x"] + extra,
            "no_label": ["", text] + extra,
        }[kind]
        f.add(csv_record(fields, delimiter, eol), bad=kind != "good" or not text.strip(), label=label)
    if fmt != "jsonl" and draw(st.booleans()):  # a quote left open runs to the end of the file
        f.add(f'pos{delimiter}"unterminated{eol}', bad=True)
    read = [kind for kind, *_ in rows if kind not in ("bad_json", "not_object")]  # the rows that become a table
    if header == "twice":
        f.refuse = "'text' twice"
    elif f.rows == 0:
        f.refuse = "empty"
    elif header == "no_text":
        f.refuse = "missing column 'text'"
    elif fmt == "jsonl" and read and set(read) == {"no_label"}:  # a key no object has is a missing column
        f.refuse = "missing column 'label'"
    return f.write()


def data_config(folder: Path, source, **data) -> Path:
    """A data config file (what `sora data show` and `sora eval --data` read) over ``source``."""
    config = folder / "data.yaml"
    config.write_text(yaml.safe_dump({"source": source, "tokenizer": {"kind": "char", "min_frequency": 1}, **data}))
    return config


@fuzz(150)
@given(data=st.data(), on_error=st.sampled_from(["fail", "skip"]))
def test_data_show_uses_or_reports_every_row(sandbox, capsys, data, on_error):
    """`sora data show` on generated files: every row is in a split or reported (count and first line);
    a file that cannot be used is one line naming it (and the line, for a bad row)."""
    with case(sandbox) as folder:
        f = data.draw(data_files(folder))
        config = data_config(folder, str(f.path), on_error=on_error)
        answer = sora(capsys, sandbox, folder / "out", "data", "show", config, "--json")
        good = f.rows - len(f.bad)
        if f.refuse or good == 0 or (f.bad and on_error == "fail"):
            message = answer.error()
            assert str(f.path) in message, message
            names_a_bad_row = any(f"{f.path}:{line}:" in message for line in f.bad)
            if f.refuse == "'text' twice":  # the header is read first
                assert f.refuse in message, message
            elif f.bad and on_error == "fail":
                assert names_a_bad_row or (f.refuse and f.refuse in message), (message, f.bad)
            elif f.refuse:  # (a file whose every row is skipped while reading is empty before it lacks a column)
                assert f.refuse in message or (f.bad and "empty" in message), message
            return
        assert answer.code == 0, answer.stderr
        info = json.loads(answer.out)
        assert sum(info["splits"].values()) == good and info.get("skipped_rows", 0) == len(f.bad)
        assert info["labels"] == sorted(f.labels)
        if f.bad:  # the skipped rows are counted and the first found is named, on one line
            said = re.search(
                rf"warning: .*skipped {len(f.bad)} bad row.*{re.escape(str(f.path))}:(\d+):", answer.stderr
            )
            assert said and int(said.group(1)) in f.bad, answer.stderr


PARAGRAPH = "It is a truth universally acknowledged, that a single man in possession of a good fortune. " * 2


@fuzz(30)
@given(
    encoding=st.sampled_from(ENCODINGS),
    on_error=st.sampled_from(["fail", "skip"]),
    long=st.booleans(),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    data=st.data(),
)
def test_data_show_reads_any_text_for_a_language_model(sandbox, capsys, encoding, on_error, long, eol, data):
    """A text file, whole, for a language model: any encoding, blank lines, short or long; a byte the
    encoding does not allow is named by its line."""
    with case(sandbox) as folder:
        lines = data.draw(st.lists(st.text(characters(encoding, exclude="\r\n"), max_size=20), max_size=8))
        lines = [PARAGRAPH] * long + lines
        book = folder / "book.txt"
        book.write_bytes(eol.join(lines).encode(encoding))
        first_bad = next((i + 1 for i, line in enumerate(lines) if encoding == "latin-1" and not line.isascii()), None)
        config = data_config(
            folder, str(book), task="lm", block_size=4, on_error=on_error, split={"validation": 0.1, "test": 0.0}
        )
        answer = sora(capsys, sandbox, folder / "out", "data", "show", config, "--json")
        if first_bad is not None:
            message = answer.error()
            assert f"{book}:{first_bad}: not valid UTF-8" in message or (on_error == "skip" and "empty" in message)
        elif answer.code == 2:
            assert not long and ("block_size" in answer.error() or "empty" in answer.error()), answer.stderr
        else:
            info = json.loads(answer.out)
            assert info["tokens"]["train"] > 4 and info["splits"]["train"] >= 1


@fuzz(20)
@given(
    train=st.lists(st.sampled_from(["pos", "neg"]), min_size=1, max_size=6),
    test=st.lists(st.sampled_from(["pos", "neg", "meh", "new"]), max_size=4),
)
def test_labels_unseen_in_training_are_said(sandbox, capsys, train, test):
    """Given splits whose test labels training never saw: the examples are used, and a warning names them."""
    with case(sandbox) as folder:
        files = {}
        for split, labels in (("train", train), ("test", test)):
            files[split] = folder / f"{split}.csv"
            files[split].write_text(
                "label,text\n" + "".join(f"{label},{split} text {i}\n" for i, label in enumerate(labels))
            )
        config = data_config(folder, {k: str(v) for k, v in files.items()}, split={"validation": 0.0})
        answer = sora(capsys, sandbox, folder / "out", "data", "show", config, "--json")
        info = json.loads(answer.out)
        assert info["splits"] == {"train": len(train), "validation": 0, "test": len(test)}
        assert info["labels"] == sorted(set(train) | set(test))
        unseen = sorted(set(test) - set(train))
        assert info.get("unseen_labels", {}) == ({"test": unseen} if unseen else {})
        warned = re.findall(
            r"^warning: .*the test split has label\(s\) (.*) that no training example has \(first rows",
            answer.stderr,
            re.M,
        )
        assert warned == ([", ".join(map(repr, unseen))] if unseen else []), answer.stderr


@st.composite
def training_files(draw, folder: Path) -> DataFile:
    """A CSV with both labels' good rows (words that give the label away) and bad rows, in any encoding."""
    f = DataFile(folder / "reviews.csv", draw(st.sampled_from(ENCODINGS)))
    f.text.append("label,text\n")
    # three good rows of each label first: enough for a test split
    kinds = ["good"] * 6 + draw(st.lists(st.sampled_from(["good", "good", "few", "no_label"]), min_size=2, max_size=10))
    for i, kind in enumerate(kinds):
        label = ["pos", "neg"][i % 2]
        tail = draw(st.text(characters(f.encoding, exclude="\r\n"), max_size=6)) if i >= 6 else str(i)
        text = f"{REVIEW_WORDS[label]} {tail}"
        fields = {"good": [label, text], "few": [label], "no_label": ["", text]}[kind]
        f.add(csv_record(fields, ",", "\r\n"), bad=kind != "good", label=label)
    return f.write()


@fuzz(4)
@given(data=st.data())
def test_train_and_eval_use_or_report_every_row(sandbox, capsys, data):
    """`sora train` on generated rows (some bad, skipped and said), then `sora eval` gives the same test
    metrics; `sora eval` on data with a label the model does not know is one line."""
    with case(sandbox) as folder:
        f = data.draw(training_files(folder))
        recipe = base_recipe(f.path)
        recipe["data"]["on_error"] = "skip"
        path = folder / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        out = folder / "out"
        answer = sora(capsys, sandbox, out, "train", path, "--out", out)
        assert answer.code == 0, answer.stderr
        if f.bad:
            assert f"skipped {len(f.bad)} bad row" in answer.stderr, answer.stderr
        metrics = json.loads((out / "metrics.json").read_text())
        assert json.loads((out / "model" / "meta.json").read_text())["labels"] == sorted(f.labels)
        answer = sora(capsys, sandbox, folder / "never", "eval", out / "model", "--data", path, "--json")
        assert json.loads(answer.out)["metrics"] == pytest.approx(metrics["test"])
        other = folder / "other.csv"
        other.write_text(reviews() + "meh,a so-so film\n")
        answer = sora(
            capsys, sandbox, folder / "never", "eval", out / "model", "--data", data_config(folder, str(other))
        )
        assert "meh" in answer.error() and str(other) in answer.error()
