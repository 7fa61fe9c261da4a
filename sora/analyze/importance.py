"""Importance of every head, neuron and layer: gradients, Taylor scores and measured ablation.

**Heads** (Michel, Levy and Neubig 2019, "Are Sixteen Heads Really Better than One?"): the
importance of head h is E_x |dL(x)/d xi_h|, where xi_h is a gate multiplying the head's output.
Rather than making the ``head_gate`` buffer require grad (one gradient per batch), each forward
multiplies ``hook_z`` by a ones tensor g of shape (B, 1, H, 1): dL_b/dg[b, h] is then example b's
own gate gradient, so one backward pass gives the expectation over *examples* as the paper
defines it. Scores are normalised per layer by their L2 norm, as in the paper.

**Neurons** (Taylor, Molchanov et al. 2017): |sum_t a_t * dL/da_t| on ``hook_post``: the first-order
change in an example's loss when the neuron is switched off, averaged over examples. (For a head,
the gate gradient above is exactly this quantity for its output.)

**Ablation**: the measured change of loss and task metric when a head, an attention layer, a
feed-forward layer or a whole block is removed (see sora.analyze.ablation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from sora.analyze.ablation import ablate, activation_means
from sora.analyze.tracing import batch_size, hooks, stack_prefix, token_valid
from sora.models.names import attention_modules, feedforward_modules
from sora.tasks import Score, loss_and_metric, run_model, score, score_figures


@dataclass
class GradientScores:
    heads: dict[str, np.ndarray] = field(default_factory=dict)  # attn path -> (H,) normalised per layer
    heads_raw: dict[str, np.ndarray] = field(default_factory=dict)  # attn path -> (H,) E|dL/dgate|
    heads_fisher: dict[str, np.ndarray] = field(default_factory=dict)  # attn path -> (H,) E[(dL/dgate)^2]
    taylor: dict[str, np.ndarray] = field(default_factory=dict)  # ffn path -> (F,); empty without a loss
    fisher: dict[str, np.ndarray] = field(default_factory=dict)  # ffn path -> (F,) E[(dL/dmask)^2]
    mean_abs: dict[str, np.ndarray] = field(default_factory=dict)  # ffn path -> (F,) E|a| (magnitude)
    active: dict[str, np.ndarray] = field(default_factory=dict)  # ffn path -> (F,) fraction of positions a > 0
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # ffn path -> activation sample (histograms)


def gradient_scores(
    model: nn.Module, batches: list[dict[str, Tensor]], task: str, *, sample_size: int = 50_000, seed: int = 0
) -> GradientScores:
    """Head importance (Michel et al.) and neuron Taylor scores in one backward pass per batch."""
    attns = [(p, a) for p, a in attention_modules(model) if a.n_heads > 0]
    ffns = [(p, f) for p, f in feedforward_modules(model) if f.d_ff > 0]
    head_sum = {p: torch.zeros(a.n_heads, dtype=torch.float64) for p, a in attns}
    head_sq = {p: torch.zeros(a.n_heads, dtype=torch.float64) for p, a in attns}
    taylor_sum = {p: torch.zeros(f.d_ff, dtype=torch.float64) for p, f in ffns}
    fisher_sum = {p: torch.zeros(f.d_ff, dtype=torch.float64) for p, f in ffns}
    abs_sum = {p: torch.zeros(f.d_ff, dtype=torch.float64) for p, f in ffns}
    active_sum = {p: torch.zeros(f.d_ff, dtype=torch.float64) for p, f in ffns}
    positions = {p: 0.0 for p, _ in ffns}
    samples: dict[str, list[Tensor]] = {p: [] for p, _ in ffns}
    n_examples = 0
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    for batch in batches:
        gates: dict[str, Tensor] = {}
        post: dict[str, Tensor] = {}

        def gate(z: Tensor, name: str) -> Tensor:  # (B, T, H, dh) * (B, 1, H, 1) of ones
            g = torch.ones(z.shape[0], 1, z.shape[2], 1, dtype=z.dtype, device=z.device, requires_grad=True)
            gates[name.removesuffix(".hook_z")] = g
            return z * g

        def keep(a: Tensor, name: str) -> None:
            post[name.removesuffix(".hook_post")] = a

        fns = {f"{p}.hook_z": gate for p, _ in attns} | {f"{p}.hook_post": keep for p, _ in ffns}
        if task == "features":  # no loss: activations only (histograms, magnitudes)
            with torch.no_grad(), hooks(model, {f"{p}.hook_post": keep for p, _ in ffns}):
                run_model(model, batch, task)
            grads = [None] * (len(attns) + len(ffns))
        else:
            with torch.enable_grad(), hooks(model, fns):
                losses = score(model, batch, task).losses  # (B,)
                wrt = [gates[p] for p, _ in attns] + [post[p] for p, _ in ffns]
                grads = torch.autograd.grad(losses.sum(), wrt, allow_unused=True) if wrt else []
        valids = token_valid(model, batch, task)
        n_examples += batch_size(batch)
        for (p, _), g in zip(attns, grads[: len(attns)]):
            if g is not None:
                g = g.detach().flatten(1).double()  # (B, 1, H, 1) -> (B, H)
                head_sum[p] += g.abs().sum(0)
                head_sq[p] += (g**2).sum(0)
        for (p, _), g in zip(ffns, grads[len(attns) :]):
            a = post[p].detach()  # (B, T, F)
            valid = valids.get(stack_prefix(model, p))
            w = valid.to(a.dtype).unsqueeze(-1) if valid is not None else torch.ones_like(a[..., :1])
            if g is not None:
                per_example = (a * g * w).sum(1).double()  # (B, F): dL_b/d mask, the first-order change
                taylor_sum[p] += per_example.abs().sum(0)
                fisher_sum[p] += (per_example**2).sum(0)
            abs_sum[p] += (a.abs() * w).sum((0, 1)).double()
            active_sum[p] += ((a > 0).to(a.dtype) * w).sum((0, 1)).double()
            positions[p] += w.sum().item()
            real = a[w.squeeze(-1) > 0].flatten()  # activations at real positions
            take = min(real.numel(), max(sample_size // max(len(batches), 1), 1))
            samples[p].append(real[torch.randperm(real.numel(), generator=generator)[:take]].float())
    model.train(was_training)
    out = GradientScores()
    n = max(n_examples, 1)
    for p, _ in attns if task != "features" else []:
        raw = (head_sum[p] / n).numpy()
        norm = float(np.linalg.norm(raw))
        out.heads_raw[p], out.heads[p] = raw, raw / norm if norm > 0 else raw
        out.heads_fisher[p] = (head_sq[p] / n).numpy()
    for p, _ in ffns:
        if task != "features":  # no loss, no Taylor score (zeros would read as "unimportant")
            out.taylor[p] = (taylor_sum[p] / n).numpy()
            out.fisher[p] = (fisher_sum[p] / n).numpy()
        out.mean_abs[p] = (abs_sum[p] / max(positions[p], 1)).numpy()
        out.active[p] = (active_sum[p] / max(positions[p], 1)).numpy()
        out.samples[p] = torch.cat(samples[p]).numpy() if samples[p] else np.zeros(0)
    return out


def ablation_scores(
    model: nn.Module,
    batches: list[dict[str, Tensor]],
    task: str,
    particles: list[str],
    *,
    mode: str = "zero",
    baseline: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Change of loss and metric (ablated - intact) when each particle alone is removed."""
    baseline = baseline or loss_and_metric(model, batches, task)
    means = activation_means(model, batches, task, particles) if mode == "mean" else None
    out = {}
    for particle in particles:
        if mode == "zero" or mode == "mean":
            with ablate(model, particle, mode, means=means):
                after = loss_and_metric(model, batches, task)
        else:
            after = _resample_eval(model, batches, task, particle)
        out[particle] = {
            "loss": after["loss"] - baseline["loss"],
            "metric": after["metric"] - baseline["metric"],
            "loss_after": after["loss"],
            "metric_after": after["metric"],
        }
    return out


@torch.no_grad()
def _resample_eval(model, batches, task, particle) -> dict[str, float]:
    """Each example takes the particle's activation from the next example of its batch."""
    return score_figures(_resampled_score(model, batch, task, particle) for batch in batches)


def _resampled_score(model, batch, task, particle) -> Score:
    with ablate(model, particle, "resample"):
        return score(model, batch, task)


def spearman(a, b) -> float | None:
    """Spearman rank correlation; None when either ranking is constant or too short."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    rho = spearmanr(a, b).statistic
    return None if np.isnan(rho) else float(rho)


def agreement(scores: dict[str, list[float]]) -> dict[str, float | None]:
    """Pairwise Spearman correlation between rankings of the same particles by different methods."""
    names = list(scores)
    return {f"{x} ~ {y}": spearman(scores[x], scores[y]) for i, x in enumerate(names) for y in names[i + 1 :]}
