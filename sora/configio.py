"""Reading typed configs from YAML or JSON with errors that name the key path and line.

Every config in Sora is a pydantic model with ``extra="forbid"``; this module turns a file or a
dict into one, and turns pydantic's errors into one message such as
``recipes/x.yaml:12: model.encoder.n_heads: Input should be a valid integer (got 'four')``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sora.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def read_mapping(path: str | Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """Read a YAML or JSON file into a dict, and a map from key path to line number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        node = yaml.compose(text)  # JSON is YAML, so one parser serves both
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML/JSON ({getattr(e, 'problem', e)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data, _key_lines(node)


def _key_lines(node, prefix: tuple = ()) -> dict[tuple, int]:
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[prefix + (i,)] = item.start_mark.line + 1
            lines.update(_key_lines(item, prefix + (i,)))
    return lines


def validate(
    model_cls: type[T],
    data: dict[str, Any],
    *,
    source: str = "config",
    prefix: tuple = (),
    lines: dict[tuple, int] | None = None,
) -> T:
    """Validate ``data`` as ``model_cls``; on failure raise one ConfigError naming every bad key."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source=source, prefix=prefix, lines=lines or {})) from None


def format_errors(e: ValidationError, *, source: str, prefix: tuple, lines: dict[tuple, int]) -> str:
    messages = []
    for err in e.errors():
        loc = prefix + tuple(p for p in err["loc"] if not _is_union_tag(p))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _nearest_line(loc, lines)
        where = f"{source}:{line}" if line else source
        got = ""
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            got = f" (got {err['input']!r})"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        messages.append(f"{where}: {key}: {msg}{got}")
    return "\n".join(messages)


def _is_union_tag(part) -> bool:
    # pydantic adds the union member's type name (e.g. 'int', 'list[int]') to the location
    return isinstance(part, str) and ("[" in part or part in {"int", "float", "str", "bool", "function-after"})


def _nearest_line(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def load(model_cls: type[T], path: str | Path, *, section: str | None = None) -> T:
    """Load ``model_cls`` from a YAML/JSON file, or from one top-level ``section`` of it."""
    data, lines = read_mapping(path)
    prefix: tuple = ()
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: missing section '{section}'")
        data, prefix = data[section], (section,)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}:{lines.get(prefix, '?')}: {section}: expected a mapping")
    return validate(model_cls, data, source=str(path), prefix=prefix, lines=lines)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        target = data
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
            target = child
        target[parts[-1]] = yaml.safe_load(raw)
    return data


def to_json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=2) + "\n"
