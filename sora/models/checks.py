"""Checks that a loaded model can give a meaningful result: finite weights, the data's labels.

Both failures would otherwise go unnoticed: NaN weights still produce an argmax and so a
plausible-looking accuracy, and a model scored against another label set gives numbers that mean
nothing. Each check names what differs, so the message says where to look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from sora.errors import SoraError
from sora.models.config import ModelConfig

SHOWN_LABELS = 12  # labels named in a message; the rest are counted


def first_nonfinite(model: nn.Module) -> tuple[str, int, int] | None:
    """(name, NaN count, inf count) of the first floating-point tensor with non-finite values, or None.

    A tensor's sum is finite only if every value is (NaN and inf propagate), and summing is about ten
    times faster than an element-wise test on CPU; only a non-finite sum (or an overflow) is looked at
    element by element."""
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor.sum())):
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            nan = int(torch.isnan(tensor).sum())
            return name, nan, int(tensor.numel() - nan - finite.sum())
    return None


def require_finite(model: nn.Module, source: str | Path) -> None:
    """Refuse a model with NaN or infinite weights (``source`` names the weights file)."""
    found = first_nonfinite(model)
    if found is not None:
        name, nan, inf = found
        raise SoraError(
            f"{source}: tensor '{name}' has non-finite values ({nan} NaN, {inf} inf); the weights are "
            "damaged or training diverged"
        )


def model_labels(meta: dict[str, Any]) -> list[str] | None:
    """The labels a model was trained on, as its meta.json records them (None when it does not)."""
    labels = meta.get("labels") or meta.get("label_names")
    return [str(x) for x in labels] if isinstance(labels, list) and labels else None


def require_same_labels(
    model: nn.Module,
    meta: dict[str, Any],
    data_labels: Sequence[str] | None,
    *,
    model_where: str | Path,
    data_where: str | Path,
) -> None:
    """Refuse data whose labels are not the model's: other names (meta.json) or another count (n_classes)."""
    if not data_labels:
        return
    data_labels = [str(x) for x in data_labels]
    trained = model_labels(meta)
    if trained is not None and trained != data_labels:
        order = " (the same labels in another order)" if sorted(trained) == sorted(data_labels) else ""
        raise SoraError(
            f"{data_where}: labels {_show(data_labels)} do not match the labels {model_where} was "
            f"trained on {_show(trained)}{order}"
        )
    n_classes = getattr(model.config, "n_classes", None)
    if trained is None and n_classes is not None and n_classes != len(data_labels):
        raise SoraError(
            f"{data_where}: {len(data_labels)} labels {_show(data_labels)}, but {model_where} predicts "
            f"{n_classes} classes"
        )


# The data task each assembly is trained and measured on (a bare encoder takes any: it only embeds).
TASKS_OF = {
    "encoder_classifier": ("classification",),
    "decoder_lm": ("lm",),
    "seq2seq": ("seq2seq",),
    "token_classifier": ("ctc",),
    "encoder": ("classification", "lm", "seq2seq", "ctc", "span"),
    "span_extractor": ("span",),
}


def require_fits(config: ModelConfig, data, where: str | Path) -> None:
    """Refuse prepared ``data`` (``sora.data``) of another modality, task or class count than the model
    ``config`` describes: its batches would fail deep inside a loss, or give figures that mean nothing."""
    if data.modality != config.input:
        raise SoraError(f"{where}: the data is {data.modality} but the model takes {config.input} input")
    wants = TASKS_OF.get(config.arch, ())
    if wants and data.task not in wants:
        raise SoraError(
            f"{where}: {data.task} data does not fit a {config.arch} model (it takes {' or '.join(wants)} data)"
        )
    if (
        data.labels is not None
        and config.n_classes is not None
        and data.task == "classification"
        and len(data.labels) != config.n_classes
    ):
        raise SoraError(
            f"{where}: the data has {len(data.labels)} labels but the model predicts {config.n_classes} classes"
        )


def _show(labels: list[str]) -> str:
    shown = ", ".join(labels[:SHOWN_LABELS])
    more = f", ... ({len(labels)} in all)" if len(labels) > SHOWN_LABELS else ""
    return f"[{shown}{more}]"
