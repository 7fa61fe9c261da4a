"""Layer distillation: each kept block learns to output what the unpruned model's block did.

Distilling the logits tells a pruned model what to answer; matching hidden states also tells every
block what to pass on, which is what a block that lost heads, neurons or a neighbour has to relearn
(TinyBERT, Jiao et al. 2020; CoFi pruning, Xia et al. 2022). Pruning heads and neurons keeps d_model,
so a pruned block's output compares directly with its original; when blocks were dropped, the kept
block before them is asked for what the last of them used to output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def teacher_blocks(origins: dict[str, str], teacher: list[str]) -> dict[str, str]:
    """Student block -> the teacher block whose output it should give: its original, or, when the blocks
    after its original were dropped, the last of those (its output now feeds what they fed).

    ``origins``: student block -> its original name; ``teacher``: the teacher's blocks, in order."""
    kept, target, current = set(origins.values()), {}, None
    for name in teacher:
        if name in kept:
            current = target[name] = name
        elif current is not None and current.rsplit(".", 1)[0] == name.rsplit(".", 1)[0]:
            target[current] = name  # a block dropped after ``current`` in the same stack
    return {student: target[original] for student, original in origins.items()}


class BlockOutputs:
    """Keeps the output of each named block from the latest forward; ``close()`` removes the hooks."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.outputs: dict[str, Tensor] = {}
        modules = dict(model.named_modules())
        self._handles = [modules[name].register_forward_hook(self._keeper(name)) for name in names]

    def _keeper(self, name: str):
        def keep(module, args, output):
            self.outputs[name] = output

        return keep

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.outputs.clear()


def hidden_loss(student: dict[str, Tensor], teacher: dict[str, Tensor], pairs: dict[str, str], batch: dict) -> Tensor:
    """Mean over block pairs of ||s - t||^2 / ||t||^2 over the real positions. Relative, so a pre-norm
    stack whose residual stream grows with depth weighs every block alike."""
    losses = []
    for s_name, t_name in pairs.items():
        s, t = student[s_name].float(), teacher[t_name].float()  # (B, T, d)
        keep = _real_positions(batch, s_name, s.shape[:2])  # (B, T) bool, or None for all
        if keep is not None:
            s, t = s[keep], t[keep]  # (N, d)
        losses.append((s - t).pow(2).sum() / t.pow(2).sum().clamp_min(1e-12))
    return sum(losses) / len(losses) if losses else torch.zeros(())  # no block left: nothing to match


def _real_positions(batch: dict, block: str, shape) -> Tensor | None:
    """The batch's padding mask for this block's stack, if it has one of the block's (B, T)."""
    key = "src_valid" if block.startswith("encoder.") else "tgt_valid" if block.startswith("decoder.") else "valid"
    mask = batch.get(key)
    return mask if mask is not None and tuple(mask.shape) == tuple(shape) else None
