"""A recipe: one YAML file that names a model, its data, and how to train, analyze, compress and export it.

``sora run RECIPE --out DIR`` runs every stage it has (sora.pipeline). Profiles are named sets of
overrides (``quick`` makes CI-sized runs); ``--set key.path=value`` overrides any single key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from sora.analyze.config import AnalyzeConfig
from sora.compress.config import CompressConfig
from sora.configio import StrictModel, apply_overrides, read_mapping, validate
from sora.data import builtin
from sora.data.config import DataConfig
from sora.deploy.config import ExportConfig
from sora.errors import ConfigError, SoraError
from sora.models.config import ModelConfig
from sora.train.config import TrainConfig


class Recipe(StrictModel):
    name: str
    description: str = ""
    model: ModelConfig
    init: str | None = Field(
        None, description="start from pretrained weights: hf:NAME, a Hugging Face or Sora model folder (sora.interop)"
    )
    data: DataConfig | None = Field(None, description="dataset and preprocessing (sora.data)")
    train: TrainConfig | None = Field(None, description="optimizer, schedule, epochs (sora.train)")
    analyze: AnalyzeConfig | None = Field(None, description="particle analysis (sora.analyze)")
    compress: CompressConfig | None = Field(None, description="pruning and quantization (sora.compress)")
    export: ExportConfig | None = Field(None, description="ONNX export of the result, ready to serve (sora.deploy)")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict, description="named override sets")


def load_recipe(path: str | Path, *, profile: str | None = None, overrides: list[str] | None = None) -> Recipe:
    data, lines = read_mapping(path)
    if not data:  # one line for an empty file, not one per missing key
        raise ConfigError(f"{path}: an empty recipe; it needs at least name and model (see recipes/*.yaml)")
    data = copy.deepcopy(data)
    if profile:
        apply_overrides(data, _profile_overrides(data, profile, path, lines))
    apply_overrides(data, overrides or [])
    recipe = validate(Recipe, data, source=str(path), lines=lines)
    _check_dataset(recipe, path, lines)
    return recipe


def _check_dataset(recipe: Recipe, path: str | Path, lines: dict[tuple, int]) -> None:
    """A built-in dataset that cannot be read (unknown, another task, a system package missing) is refused
    here, before a command creates its output folder or prepares any data; the check fetches nothing."""
    if recipe.data is None or recipe.data.dataset is None:
        return
    try:
        builtin.check_available(recipe.data.dataset, recipe.data.task)
    except SoraError as e:
        message = str(e) if str(e).startswith("data.") else f"data.dataset: {e}"
        line = lines.get(("data", message[len("data.") :].split(":")[0]))
        raise ConfigError(f"{path}:{line}: {message}" if line else f"{path}: {message}") from None


def _profile_overrides(data: dict[str, Any], profile: str, path: str | Path, lines: dict[tuple, int]) -> list[str]:
    """The ``key=value`` overrides of a named profile (a mapping of key paths to values)."""
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}:{lines.get(('profiles',), '?')}: profiles: expected a mapping of names to overrides")
    if profile not in profiles:
        raise ConfigError(f"{path}: no profile {profile!r} (has: {', '.join(map(str, profiles)) or 'none'})")
    chosen = profiles[profile] or {}
    if not isinstance(chosen, dict):
        raise ConfigError(
            f"{path}:{lines.get(('profiles', profile), '?')}: profiles.{profile}: expected a mapping "
            "of key paths to values, e.g. train.epochs: 1"
        )
    return [f"{k}={_yaml(v)}" for k, v in chosen.items()]


def _yaml(value: Any) -> str:
    return json.dumps(value, default=str)  # JSON is valid YAML: the override parser reads it back exactly
