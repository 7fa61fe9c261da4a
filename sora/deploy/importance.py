"""Each head's importance from the model's analysis, for the page to show beside the head's name.

``sora analyze`` writes ``analysis.json`` with a row per head (``{"name": "layers.1.attn.head.3", "gradient": ...,
"ablation": {"loss": ...}, "rank": ..., "type": ...}``); ``sora run`` lays a run out as ``runs/NAME/model`` beside
``runs/NAME/analysis``. The JSON is read as data here (deploy does not import sora.analyze): a missing or
unreadable file only means no importance is shown.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ANALYSIS = "analysis.json"


def find_analysis(model_dir: Path | None) -> Path | None:
    """``analysis.json`` in the model folder, or in ``../analysis/`` beside it; for an export folder, also
    where the model folder it was exported from keeps one (meta.json's ``export.source``)."""
    for folder in (model_dir, _export_source(model_dir)):
        if folder is None:
            continue
        for candidate in (Path(folder) / ANALYSIS, Path(folder).parent / "analysis" / ANALYSIS):
            if candidate.is_file():
                return candidate
    return None


def head_importance(path: Path | None) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """``({head name: {"importance", "rank", "type"}}, {"source", "method"})``, or ``({}, None)`` when there is
    no usable analysis. Importance is the gradient score (Michel et al.) when measured, else the loss increase
    when the head is ablated; rank 1 is the most important head."""
    if path is None:
        return {}, None
    try:
        rows = json.loads(Path(path).read_text()).get("heads") or []
    except (OSError, ValueError, AttributeError):
        return {}, None
    rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("name"), str)]
    method = "gradient" if any(_number(r.get("gradient")) is not None for r in rows) else "ablation"
    scores = {r["name"]: _score(r, method) for r in rows}
    ranked = sorted((s, n) for n, s in scores.items() if s is not None)[::-1]
    ranks = {name: i + 1 for i, (_, name) in enumerate(ranked)}
    heads = {
        r["name"]: {"importance": scores[r["name"]], "rank": ranks.get(r["name"]), "type": r.get("type")} for r in rows
    }
    if not any(h["importance"] is not None for h in heads.values()):
        return {}, None
    return heads, {"source": str(path), "method": method}


def _score(row: dict, method: str) -> float | None:
    if method == "gradient":
        return _number(row.get("gradient"))
    ablation = row.get("ablation")
    return _number(ablation.get("loss")) if isinstance(ablation, dict) else None


def _number(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _export_source(model_dir: Path | None) -> Path | None:
    try:
        source = json.loads((Path(model_dir) / "meta.json").read_text())["export"]["source"]
    except (TypeError, OSError, ValueError, KeyError):
        return None
    return Path(source) if isinstance(source, str) and source else None  # as given to sora export
