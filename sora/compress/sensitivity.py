"""Which Linears int8 hurts most: measured, one at a time, on real batches.

Dynamic int8 quantizes each Linear's input per tensor, so a layer whose activations have a few
large outliers loses most of its resolution. In a fine-tuned MiniLM the first blocks' FFN Linears
(``fc_out`` fed by GELU outputs, ``fc_in`` by a LayerNorm with one outsized channel) moved the
outputs several times more than any other Linear. Giving the worst few per-row activation scales
(or fp32 maths) removes most of int8's effect on the predictions for a few percent of its
speed-up (docs/compression.md). Their weights stay int8 on disk.
"""

from __future__ import annotations

from itertools import islice
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.compress.config import QuantizeConfig
from sora.compress.quantize import int8_linears, quantize_model
from sora.data.protocol import TaskData
from sora.particles.int8 import Int8Linear
from sora.tasks import Task


@torch.inference_mode()
def linear_sensitivity(
    model: nn.Module, batches: list[dict], forward: Callable[[nn.Module, dict], Tensor], names: list[str]
) -> dict[str, float]:
    """For each Linear in ``names``: KL(fp32 outputs || outputs with only that Linear in int8), summed
    over ``batches``. ``model`` is restored before returning."""
    model = model.eval()
    reference = [F.log_softmax(forward(model, b).float(), dim=-1) for b in batches]
    scores = {}
    for name in names:
        original = model.get_submodule(name)
        model.set_submodule(name, Int8Linear.from_linear(original))
        try:
            scores[name] = sum(
                float(F.kl_div(F.log_softmax(forward(model, b).float(), dim=-1), ref, log_target=True, reduction="sum"))
                for b, ref in zip(batches, reference)
            )
        finally:
            model.set_submodule(name, original)
    return scores


def most_sensitive(scores: dict[str, float], n: int) -> list[str]:
    return sorted(scores, key=lambda k: (-scores[k], k))[:n]


def sensitivity_ranking(
    model: nn.Module, data: TaskData, task: Task, config: QuantizeConfig | None = None
) -> tuple[list[str], str]:
    """Every Linear that would run in int8, the one per-call int8 hurts most first, measured on
    ``config.calibration_batches`` validation batches (train if there is none); and where."""
    config = config or QuantizeConfig()
    split = "validation" if data.has_split("validation") else "train"
    batches = list(islice(data.loader(split, 32, shuffle=True), config.calibration_batches))
    scores = linear_sensitivity(model, batches, task.forward, int8_linears(model, config))
    return most_sensitive(scores, len(scores)), f"{len(batches)} {split} batches"


def quantize_calibrated(
    model: nn.Module,
    data: TaskData,
    task: Task,
    config: QuantizeConfig | None = None,
    *,
    log: Callable[[str], None] = print,
    ranking: list[str] | None = None,
) -> nn.Module:
    """int8 where the ``config.sensitive`` Linears that per-call int8 hurts most on ``data`` get
    ``config.sensitive_as``: per-row activation scales or fp32 maths. ``ranking``: a
    ``sensitivity_ranking`` already measured for this model, to quantize it several ways."""
    config, keep = config or QuantizeConfig(), []
    if config.sensitive and not (config.activations == "row" and config.sensitive_as == "row"):
        where = "a given ranking"
        if ranking is None:
            ranking, where = sensitivity_ranking(model, data, task, config)
        keep = ranking[: config.sensitive]
        if keep:
            how = "per-row activation scales" if config.sensitive_as == "row" else "fp32 maths"
            log(f"int8 sensitivity on {where}: {how} for {', '.join(keep)}")
    if config.sensitive_as == "row":
        return quantize_model(model, config, row_scaled=keep)
    return quantize_model(model, config, fp32_compute=keep)
