"""The import graph of ``sora/``, read from the source: layers point one way and nothing imports in a cycle.

Every ``import`` counts, at the top of a file or inside a function, so the rule is about the code as
it runs, not as its first lines read. The layers, lowest first (README, "Layout"):

    particles <- models;  data apart from both;  tasks on models and data;  train on tasks;
    analyze, compress, interop on train (compress also on analyze: it prunes on its scores);
    deploy on tasks (it serves models and featurizes data, never trains);
    pipeline (pipeline.py, recipe.py, outdir.py, stages.py, run_report) on all of those;  cli on top.

``errors``, ``configio``, ``atomic`` and ``paths`` are base utilities any layer may use.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import sora

ROOT = Path(sora.__file__).parent
BASE = {"sora", "sora.errors", "sora.configio", "sora.atomic", "sora.paths"}  # use only each other
TOP_MODULES = {
    "pipeline": "pipeline",
    "recipe": "pipeline",
    "outdir": "pipeline",
    "run_report": "pipeline",
    "stages": "pipeline",
    "__main__": "cli",
}
BELOW_TRAIN = {"particles", "models", "data", "tasks"}
ON_TRAIN = BELOW_TRAIN | {"train"}
MAY_IMPORT: dict[str, set[str]] = {  # each layer, and the layers it may import besides its own and the base
    "particles": set(),
    "models": {"particles"},
    "data": set(),
    "tasks": {"particles", "models", "data"},  # what a model's outputs mean: loss, metrics, decoding
    "train": BELOW_TRAIN,
    "analyze": ON_TRAIN,
    "compress": ON_TRAIN | {"analyze"},  # prunes on the importance scores analyze measures
    "interop": ON_TRAIN,
    "deploy": BELOW_TRAIN,  # exports and serves models, featurizes raw inputs as data does; never trains
    "pipeline": ON_TRAIN | {"analyze", "compress", "interop", "deploy"},
    "cli": ON_TRAIN | {"analyze", "compress", "interop", "deploy", "pipeline"},
}
# Imports a function may make itself: optional dependencies, and libraries one feature needs that
# would cost every command their import time (measured on 2 CPU cores, torch already loaded).
LAZY_LIBRARIES = {
    "transformers": "optional (the dev extra): parity checks only",
    "fcntl": "POSIX only: the dataset cache's lock",
    "matplotlib": "0.3-1.9 s: a report's figures",
    "rdata": "1.2 s: one built-in dataset (austen)",
    "sklearn": "1.7 s: the TF-IDF baseline, stop words, one built-in dataset (digits)",
    "pyarrow": "0.1 s: parquet files only",
    "torch.distributed.fsdp": "2.9 s: FSDP2 under torchrun only",
    "torch.distributed.checkpoint": "2.9 s: sharded checkpoints under torchrun only",
    "torch.utils.tensorboard": "0.65 s: only a run that logs",
}
# Runtime dependencies Sora does not import itself, and why each stays (pyproject.toml says it too).
NOT_IMPORTED = {
    "s3fs": "fsspec loads it for s3:// data",
    "aiohttp": "fsspec loads it for http(s):// data",
    "tensorboard": "imported through torch.utils.tensorboard",
    "onnxscript": "torch.onnx's exporter needs it",
    "uvloop": "uvicorn runs sora serve on it when installed",
    "httptools": "uvicorn parses HTTP with it when installed",
}
PYPROJECT = ROOT.parent / "pyproject.toml"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a sora module) or top-level name (a library)
    line: int
    in_function: bool

    def where(self) -> str:
        return f"{self.source}:{self.line}"


@cache
def module_names() -> dict[str, Path]:
    """``sora.models.folder`` -> its file, for every module of the package."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = ("sora", *path.relative_to(ROOT).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import in the file, resolved to the sora module it runs (or the library it names)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {
        id(node)
        for stmt in tree.body
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for node in ast.walk(stmt)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        for target in _targets(node, package, modules):
            found.append(Import(name, target, node.lineno, id(node) not in top))
    return found


def _targets(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from . import x, from ..models import y
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


@cache
def graph() -> list[Import]:
    modules = module_names()
    return [imp for name, path in sorted(modules.items()) for imp in imports(name, path, modules)]


def sora_imports() -> list[Import]:
    """Imports of other sora modules, each (source, target, line) once."""
    found = {imp: None for imp in graph() if imp.target.split(".")[0] == "sora" and imp.target != imp.source}
    return list(found)


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    parts = module.split(".")
    return TOP_MODULES.get(parts[1], parts[1])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


# -- the rules


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted({name for name in module_names() if layer(name) not in MAY_IMPORT and layer(name) != "base"})
    assert not unknown, f"place these in MAY_IMPORT (and the README's Layout): {unknown}"


def test_no_layer_imports_a_higher_one():
    wrong = [
        f"{imp.where()}: {layer(imp.source)} imports {imp.target} ({layer(imp.target)})"
        for imp in sora_imports()
        if layer(imp.target) not in {"base", layer(imp.source)} | MAY_IMPORT.get(layer(imp.source), set())
    ]
    assert not wrong, "\n".join(wrong)


def test_base_utilities_import_only_each_other():
    wrong = [
        f"{imp.where()}: imports {imp.target}"
        for imp in sora_imports()
        if imp.source in BASE and imp.target not in BASE
    ]
    assert not wrong, "\n".join(wrong)


def test_the_layer_order_itself_has_no_cycle():
    assert not cycles(MAY_IMPORT)


def test_no_module_is_part_of_an_import_cycle():
    edges: dict[str, set[str]] = {}
    for imp in sora_imports():
        edges.setdefault(imp.source, set()).add(imp.target)
    found = cycles(edges)
    assert not found, "\n".join(" <-> ".join(component) for component in found)


def test_sora_modules_are_imported_at_the_top_of_files():
    """So the graph a reader sees in a file's first lines is the real one."""
    hidden = [f"{imp.where()}: {imp.target}" for imp in sora_imports() if imp.in_function]
    assert not hidden, "\n".join(hidden)


def test_libraries_imported_in_functions_are_optional_or_heavy():
    hidden = [
        f"{imp.where()}: {imp.target}"
        for imp in graph()
        if imp.in_function
        and imp.target.split(".")[0] != "sora"
        and not any(imp.target == lib or imp.target.startswith(lib + ".") for lib in LAZY_LIBRARIES)
    ]
    assert not hidden, "import these at the top, or say in LAZY_LIBRARIES why not:\n" + "\n".join(hidden)


# -- dependencies: pyproject.toml against what the code imports


def _distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extra: str | None = None) -> set[str]:
    """Distribution names in pyproject.toml's dependencies (or one extra's)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {_distribution(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def imported_distributions() -> dict[str, str]:
    """Distribution -> one place that imports it, for every library the package imports."""
    owners = packages_distributions()
    found = {}
    for imp in graph():
        top = imp.target.split(".")[0]
        if top != "sora" and top not in sys.stdlib_module_names:
            for dist in owners.get(top, [top]):
                found.setdefault(_distribution(dist), imp.where())
    return found


def test_every_library_sora_imports_is_a_declared_dependency():
    optional = declared("dev")  # transformers: parity checks only, imported where used
    missing = {d: where for d, where in imported_distributions().items() if d not in declared() | optional}
    assert not missing, f"add to pyproject.toml's dependencies: {missing}"


def test_every_runtime_dependency_is_imported_or_says_why_not():
    unused = declared() - set(imported_distributions()) - set(NOT_IMPORTED)
    assert not unused, f"not imported by sora/: move to an extra, or say why in NOT_IMPORTED: {sorted(unused)}"


def test_bench_only_libraries_are_an_extra():
    assert "torchao" in declared("bench") and "torchao" not in declared()
    assert "torchao" not in imported_distributions()


# -- the checker itself


def test_cycles_finds_a_loop_and_ignores_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []


def test_imports_inside_functions_and_relative_imports_are_seen(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("import torch\n\ndef f():\n    from ..models import folder\n    from . import errors\n")
    modules = {"sora.models.folder": source, "sora.train.errors": source}
    found = imports("sora.train.mod", source, modules)
    assert [(i.target, i.in_function) for i in found] == [
        ("torch", False),
        ("sora.models.folder", True),
        ("sora.train.errors", True),
    ]
