"""Unstructured magnitude pruning: zero the smallest weights of the blocks' matrices, for good.

Unlike ``torch.nn.utils.prune`` (a mask and a reparametrisation that live on in the model), the
zeros are written into the weights: the model stays an ordinary Sora model, saves and reloads as
one, and a sparsity report says how many weights are zero where. Dense matrices with zeros in
them run exactly as fast as before, so no speed is claimed; the gain is in what a sparse kernel or
a compressor could do with them.
"""

from __future__ import annotations

import torch
from torch import nn

from sora.errors import SoraError
from sora.particles import Block


def block_matrices(model: nn.Module) -> dict[str, nn.Parameter]:
    """The Linear weights inside Transformer blocks (attention and feed-forward), by name."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, Block):
            for sub, child in module.named_modules():
                if isinstance(child, nn.Linear) and child.weight.numel():
                    out[f"{name}.{sub}.weight"] = child.weight
    return out


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float, *, scope: str = "global") -> dict:
    """Zero ``sparsity`` of the block weights with the smallest |w|, in place; return the report.

    ``global`` uses one threshold for all matrices (layers that matter less lose more);
    ``per_layer`` zeroes the same fraction of every matrix.
    """
    if not 0 <= sparsity <= 1:
        raise SoraError(f"sparsity {sparsity:.0%} is not between 0% and 100% of the weights")
    if scope not in ("global", "per_layer"):
        raise SoraError(f"sparsity scope must be 'global' or 'per_layer', got {scope!r}")
    weights = block_matrices(model)
    if not weights:
        raise SoraError("sparsity: nothing to prune by magnitude: no block weights are left (no heads or neurons)")
    if scope == "global":
        threshold = _kth_magnitude(torch.cat([w.abs().flatten() for w in weights.values()]), sparsity)
        for w in weights.values():
            w.mul_(w.abs() > threshold)
    else:
        for w in weights.values():
            w.mul_(w.abs() > _kth_magnitude(w.abs().flatten(), sparsity))
    return sparsity_report(model)


def _kth_magnitude(magnitudes: torch.Tensor, fraction: float) -> float:
    """The magnitude at or below which ``fraction`` of the entries lie (-1 keeps everything)."""
    k = int(round(fraction * magnitudes.numel()))
    if k == 0:
        return -1.0
    return magnitudes.kthvalue(k).values.item()


def sparsity_report(model: nn.Module) -> dict:
    """Zeros per block matrix and in total (and over every parameter, embeddings included)."""
    rows = []
    for name, w in block_matrices(model).items():
        zeros = int((w == 0).sum())
        rows.append({"name": name, "weights": w.numel(), "zeros": zeros, "sparsity": zeros / w.numel()})
    total = sum(r["weights"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    all_params = sum(p.numel() for p in model.parameters())
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return {
        "block_weights": total,
        "block_zeros": zeros,
        "block_sparsity": zeros / total if total else 0.0,
        "parameters": all_params,
        "parameter_sparsity": all_zeros / all_params if all_params else 0.0,
        "matrices": rows,
    }
