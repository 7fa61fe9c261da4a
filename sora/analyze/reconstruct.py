"""Mask tuning by per-layer output reconstruction (Kwon et al. 2022, "A Fast Post-Training Pruning Framework
for Transformers", section 4.3).

Once some heads are removed, the heads left in a layer can make up part of what is missing: their gates
(``head_gate``, 1 by default) become real numbers chosen by least squares so that the layer's output on the
pruned model's own inputs comes as close as it can to the intact model's output. Layers are tuned first to
last, each on inputs that already carry the earlier layers' tuning. With head h's contribution
C_h = z_h W_o,h^T (positions x d) and the intact output Y (bias removed), the gates m of the kept heads solve

    (A + lambda * mean(diag A) * I) m = b,   A_hk = <C_h, C_k>,   b_h = <C_h, Y>

summed over real positions of the calibration batches. A layer keeps gates of 1 when tuning would not lower
its reconstruction error. Structural pruning keeps the gates of the heads it keeps, so a tuned model stays
tuned when its pruned heads are cut out.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sora.analyze.masking import split_name, units_off
from sora.analyze.tracing import hooks, stack_prefix, token_valid
from sora.models.names import attention_modules
from sora.tasks import run_model

DAMPING = 1e-3


def _positions(x: Tensor, valid: Tensor | None) -> Tensor:
    """(B, T, ...) -> (P, ...) at real positions (all of them when the mask does not fit, e.g. CLS queries)."""
    if valid is not None and tuple(valid.shape) == tuple(x.shape[:2]):
        return x[valid]
    return x.flatten(0, 1)


@torch.no_grad()
def intact_outputs(model: nn.Module, batches: list[dict[str, Tensor]], task: str) -> dict[str, list[Tensor]]:
    """Each attention layer's output without its bias, at real positions, per batch: (P, d) tensors."""
    paths = [p for p, a in attention_modules(model) if a.n_heads > 0]
    out: dict[str, list[Tensor]] = {p: [] for p in paths}
    for batch in batches:
        valids = token_valid(model, batch, task)
        seen: dict[str, Tensor] = {}
        with hooks(model, {f"{p}.hook_out": (lambda x, n: seen.__setitem__(n, x)) for p in paths}):
            run_model(model, batch, task)
        for p in paths:
            y = seen[f"{p}.hook_out"]
            bias = model.get_submodule(p).out_proj.bias
            y = y - bias if bias is not None else y
            out[p].append(_positions(y, valids.get(stack_prefix(model, p))).double())
    return out


@torch.no_grad()
def _normal_equations(model, batches, task, path: str, targets: list[Tensor]) -> tuple[Tensor, Tensor, float]:
    """A (H, H), b (H,) and |Y|^2 of one layer, its gates as they are now (removed heads at 0)."""
    attn = model.get_submodule(path)
    w = attn.out_proj.weight.double().view(-1, attn.n_heads, attn.head_dim)  # (d, H, dh)
    a = torch.zeros(attn.n_heads, attn.n_heads, dtype=torch.float64)
    b = torch.zeros(attn.n_heads, dtype=torch.float64)
    energy = 0.0
    for batch, y in zip(batches, targets):
        seen: dict[str, Tensor] = {}
        with hooks(model, {f"{path}.hook_z": lambda z, n: seen.__setitem__(n, z)}):
            run_model(model, batch, task)
        z = seen[f"{path}.hook_z"] / attn.head_gate.view(1, 1, -1, 1).clamp_min(1e-12)  # ungated (B, T, H, dh)
        z = _positions(z, token_valid(model, batch, task).get(stack_prefix(model, path))).double()  # (P, H, dh)
        c = torch.einsum("phe,dhe->phd", z, w)  # (P, H, d) each head's contribution
        a += torch.einsum("phd,pkd->hk", c, c)
        b += torch.einsum("phd,pd->h", c, y)
        energy += float((y**2).sum())
    return a, b, energy


def _solve(a: Tensor, b: Tensor, energy: float, keep: list[int]) -> Tensor | None:
    """Gates of the kept heads, or None when least squares would not beat gates of 1."""
    idx = torch.tensor(keep)
    ak, bk = a[idx][:, idx], b[idx]
    damped = ak + DAMPING * ak.diagonal().mean().clamp_min(1e-12) * torch.eye(len(keep), dtype=ak.dtype)
    m = torch.linalg.solve(damped, bk)
    ones = torch.ones_like(m)

    def error(g):
        return energy - 2 * g @ bk + g @ ak @ g

    return m if error(m) < error(ones) else None


def tuned_gates(
    model: nn.Module,
    batches: list[dict[str, Tensor]],
    task: str,
    removed: list[str],
    targets: dict[str, list[Tensor]] | None = None,
) -> dict[str, float]:
    """Gate values of the heads kept by ``removed``, layer by layer, that best reconstruct each layer's intact
    output (``targets``: ``intact_outputs``, measured once for many calls)."""
    targets = targets if targets is not None else intact_outputs(model, batches, task)
    gone = {split_name(n)[0]: set() for n in removed}
    for n in removed:
        gone[split_name(n)[0]].add(split_name(n)[2])
    values: dict[str, float] = {}
    for path, attn in attention_modules(model):
        if attn.n_heads == 0 or not gone.get(path):
            continue  # a layer that lost nothing is reconstructed already
        keep = [h for h in range(attn.n_heads) if h not in gone[path]]
        if not keep:
            continue
        with units_off(model, removed, values):
            a, b, energy = _normal_equations(model, batches, task, path, targets[path])
        m = _solve(a, b, energy, keep)
        if m is not None:
            values.update({f"{path}.head.{h}": float(v) for h, v in zip(keep, m)})
    return values


@torch.no_grad()
def tune_pruned(
    pruned: nn.Module, original: nn.Module, batches: list[dict[str, Tensor]], task: str
) -> dict[str, float]:
    """Tune, in place, the gates of the heads left in each attention layer of ``pruned`` that lost heads, to
    reconstruct ``original``'s layer outputs (same layer paths: no block dropped between them). Returns the
    gates set, by head name in ``pruned``."""
    targets = intact_outputs(original, batches, task)
    before = {p: a.n_heads for p, a in attention_modules(original)}
    values: dict[str, float] = {}
    for path, attn in attention_modules(pruned):
        if attn.n_heads == 0 or attn.n_heads >= before.get(path, 0) or path not in targets:
            continue
        a, b, energy = _normal_equations(pruned, batches, task, path, targets[path])
        m = _solve(a, b, energy, list(range(attn.n_heads)))
        if m is not None:
            attn.head_gate.copy_(m.to(attn.head_gate.dtype))
            values.update({f"{path}.head.{h}": float(v) for h, v in enumerate(m)})
    return values
