"""Reading typed configs from YAML or JSON with errors that name the key path and line.

Every config in Sora is a pydantic model with ``extra="forbid"``; this module turns a file or a
dict into one, and turns pydantic's errors into one message such as
``recipes/x.yaml:12: model.encoder.n_heads: Input should be a valid integer (got 'four')``.

``read_section`` is the one reader of a recipe's ``model:``, ``data:``, ``analyze:`` or ``compress:``
section, or of a file that holds only that section: every command that takes such a file accepts
the same shapes and names file, line and key path the same way.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sora.errors import ConfigError, first_line

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, assignments are validated, numbers are finite
    (a NaN or infinite rate, size or bound is always a mistake, and ranges cannot catch NaN)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


#: a random seed, as every generator takes it (numpy's legacy seeding needs 0 <= seed < 2**32)
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def read_mapping(path: str | Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """Read a YAML or JSON file into a dict, and a map from key path to line number."""
    path = Path(path)
    text = read_text(path, "config")
    try:
        node = yaml.compose(text)  # JSON is YAML, so one parser serves both
        data = yaml.safe_load(text)
        lines = _key_lines(node)
    except YAML_ERRORS as e:
        raise ConfigError(f"{_where(path, e)}: not valid YAML/JSON ({_problem(e)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level, got {_kind(data)}")
    return data, lines


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file's contents; a binary, unreadable or missing file is one ConfigError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not a UTF-8 text {what} file (byte {e.start} is 0x{e.object[e.start]:02x}); "
            "is it a binary or damaged file?"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what} ({e.strerror or e})") from None


def read_json_file(path: str | Path, what: str = "JSON", expect: type = dict) -> Any:
    """A JSON file that must hold an object (config.json, meta.json) or another ``expect``ed type: every
    failure one line naming the file."""
    path = Path(path)
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not usable JSON (nested too deeply)") from None
    if not isinstance(data, expect):
        wanted = "a JSON object" if expect is dict else _kind(expect())
        raise ConfigError(f"{path}: expected {wanted}, got {_kind(data)}")
    return data


# What a YAML document can raise besides YAMLError: safe_load's constructors raise ValueError
# ("2001-13-01", "!!int abc") and AttributeError ("!!timestamp abc"); a recursive alias recursion.
YAML_ERRORS = (yaml.YAMLError, ValueError, TypeError, AttributeError, RecursionError)


def _where(path, e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    return f"{path}:{mark.line + 1}" if mark else str(path)


def _problem(e: Exception) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply, or an alias that contains itself"
    return getattr(e, "problem", None) or first_line(e)


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        type(None): "null",
    }.get(type(value), type(value).__name__)


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
    """One line per bad key: what every member of a union, or every bad item of a list, says is one line."""
    messages = []
    for loc, errs in _by_key(e.errors()).items():
        loc = prefix + loc
        key = ".".join(str(p) if str(p).isprintable() else repr(p) for p in loc) or "(top level)"  # one line
        line = _nearest_line(loc, lines)
        where = f"{source}:{line}" if line else source
        members = list(dict.fromkeys(tag for tag, _, _ in errs if tag))
        if len(members) > 1:
            whole = next((err for _, err, part in errs if not part), errs[0][1])
            inner = next(((part, err) for _, err, part in errs if part), None)  # what the one that came closest says
            detail = f"; {key}.{inner[0]}: {_message(inner[1])}{_got(inner[1])}" if inner else ""
            text = f"expected {' or '.join(members)}{_got(whole)}{detail}"
        else:
            text = "; ".join(
                dict.fromkeys(
                    f"{'item ' + part + ': ' if part else ''}{_message(err)}{_got(err)}" for _, err, part in errs
                )
            )
        messages.append(f"{where}: {key}: {text}")
    return "\n".join(messages)


def _by_key(errors: list[dict]) -> dict[tuple, list[tuple[str | None, dict, str]]]:
    """Errors grouped by the key they are about, each with its union member (if any) and the part of the
    value it is about (a list item, "" for the whole value)."""
    groups: dict[tuple, list[tuple[str | None, dict, str]]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        cut = next((i for i, p in enumerate(loc) if _is_union_tag(p) or isinstance(p, int)), len(loc))
        tag = loc[cut] if cut < len(loc) and _is_union_tag(loc[cut]) else None
        part = ".".join(str(p) for p in loc[cut:] if not _is_union_tag(p))
        groups.setdefault(loc[:cut], []).append((tag, err, part))
    return groups


def _message(err: dict) -> str:
    return "unknown key" if err["type"] == "extra_forbidden" else err["msg"]


def _got(err: dict) -> str:
    """The value given; not a whole section, which is what a section's own check (at no key) saw."""
    shown = err["type"] not in ("missing", "extra_forbidden") and "input" in err and tuple(err["loc"]) != ()
    return f" (got {err['input']!r})" if shown else ""


def _is_union_tag(part) -> bool:
    # pydantic adds the union member's type name (e.g. 'int', 'list[int]') to the location
    return isinstance(part, str) and ("[" in part or part in {"int", "float", "str", "bool", "function-after"})


def _nearest_line(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


#: top-level keys that make a file a recipe (sora.recipe.Recipe): no section config has a key by these names
RECIPE_KEYS = ("model", "data")


@dataclass
class Section:
    """One section of a config file, with what a validation error needs to name file, line and key path."""

    data: dict[str, Any]
    source: str  # the file
    prefix: tuple = ()  # the section's key path in the file: ("data",) in a recipe, () in a file of its own
    lines: dict[tuple, int] = field(default_factory=dict)

    def validate(self, model_cls: type[T], overrides: list[str] | tuple[str, ...] = ()) -> T:
        """The section as ``model_cls``, after ``key=value`` overrides inside it (``limit=500``)."""
        return validate(
            model_cls,
            apply_overrides(self.data, list(overrides)),
            source=self.source,
            prefix=self.prefix,
            lines=self.lines,
        )


def read_section(path: str | Path, name: str, *, standalone: bool = True, required: bool = False) -> Section | None:
    """The ``name:`` section of a recipe, or a whole file that is that section alone.

    A file with a ``model:`` or ``data:`` key is a recipe: its ``name:`` section (a mapping), or None when
    it has none (an error naming the file when ``required``). Any other file is the section itself when
    ``standalone`` (a data config for ``data``, a model config for ``model``), else None. The returned
    data is a copy: overrides applied to it leave the file's mapping alone.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    mapping, lines = read_mapping(path)
    if not any(key in mapping for key in RECIPE_KEYS):
        return Section(mapping, str(path), (), lines) if standalone else None
    value = mapping.get(name)
    if value is None:
        if required:
            raise ConfigError(f"{path}: a recipe without a {name}: section")
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}:{lines.get((name,), '?')}: {name}: expected a mapping")
    return Section(copy.deepcopy(value), str(path), (name,), lines)


def load(model_cls: type[T], path: str | Path) -> T:
    """Load ``model_cls`` from a whole YAML/JSON file (a recipe's section: ``read_section``)."""
    data, lines = read_mapping(path)
    return validate(model_cls, data, source=str(path), lines=lines)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: expected key.path=value, with a name between every two dots")
        target = data
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
            target = child
        target[parts[-1]] = _override_value(key, raw)
    return data


def _override_value(key: str, raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except YAML_ERRORS as e:
        raise ConfigError(
            f"--set {key + '=' + raw!r}: the value is not valid YAML ({_problem(e)}); quote it if it "
            "is text, e.g. --set 'name=\"a: b\"'"
        ) from None


def to_json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=2) + "\n"
