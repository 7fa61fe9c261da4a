"""A recipe: one YAML file that names a model, its data, and how to train, analyze and compress it.

``sora run RECIPE --out DIR`` runs every stage it has (sora.pipeline). Profiles are named sets of
overrides (``quick`` makes CI-sized runs); ``--set key.path=value`` overrides any single key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import Field

from sora.analyze.config import AnalyzeConfig
from sora.compress.config import CompressConfig
from sora.configio import StrictModel, apply_overrides, read_mapping, validate
from sora.data.config import DataConfig
from sora.errors import ConfigError
from sora.models.config import ModelConfig
from sora.train.config import TrainConfig


class Recipe(StrictModel):
    name: str
    description: str = ""
    model: ModelConfig
    init: str | None = Field(None, description="start from pretrained weights: hf:NAME, a Hugging Face or Sora model folder (sora.interop)")
    data: DataConfig | None = Field(None, description="dataset and preprocessing (sora.data)")
    train: TrainConfig | None = Field(None, description="optimizer, schedule, epochs (sora.train)")
    analyze: AnalyzeConfig | None = Field(None, description="particle analysis (sora.analyze)")
    compress: CompressConfig | None = Field(None, description="pruning and quantization (sora.compress)")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict, description="named override sets")


def load_recipe(path: str | Path, *, profile: str | None = None, overrides: list[str] | None = None) -> Recipe:
    data, lines = read_mapping(path)
    data = copy.deepcopy(data)
    if profile:
        profiles = data.get("profiles") or {}
        if profile not in profiles:
            raise ConfigError(f"{path}: no profile {profile!r} (has: {', '.join(profiles) or 'none'})")
        apply_overrides(data, [f"{k}={_yaml(v)}" for k, v in profiles[profile].items()])
    apply_overrides(data, overrides or [])
    return validate(Recipe, data, source=str(path), lines=lines)


def _yaml(value: Any) -> str:
    import json

    return json.dumps(value)  # JSON is valid YAML: the override parser reads it back exactly
