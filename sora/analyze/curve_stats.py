"""Judging pruning curves: is a ranking better than removing units at random, beyond the noise?

Every curve is a (K, N) matrix of per-example hits (K points on the curve, N examples, see
sora.analyze.masking). From it:

- the metric at each point, with a bootstrap 95% interval over examples;
- the area under the curve (mean metric over the fraction removed, trapezoids), with its interval;
- the largest fraction removable within one point of the intact model, with its interval;
- against random order (S random orders): the difference at each point and its noise
  ``Z * sqrt(se_boot^2 + sd_seeds^2 / S)``, where ``se_boot`` is the bootstrap standard error of the paired
  difference (ranking minus the mean of the random orders, the same resampled examples for both) and
  ``sd_seeds`` the spread of the random orders at that point. A ranking **loses to random** at a point where
  it is below the random mean by more than that noise; one such point flags it.
"""

from __future__ import annotations

import numpy as np

Z = 2.0  # noise multiplier: about a 95% two-sided interval at each point
RESAMPLES = 200
TOLERANCE = 0.01  # one point of the [0, 1] metric


def metric(hits: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """(K,) metric of a (K, N) hits matrix."""
    return hits.sum(-1) / max(float(totals.sum()), 1e-12)


def auc(fractions: list[float], values) -> np.ndarray | float:
    """Mean metric over the fraction removed (trapezoids); ``values`` (K,) or (K, R)."""
    x, y = np.asarray(fractions, dtype=float), np.asarray(values, dtype=float)
    width = x[-1] - x[0]
    if width <= 0:
        return y[0]
    dx = np.diff(x).reshape(-1, *([1] * (y.ndim - 1)))
    return ((y[1:] + y[:-1]) / 2 * dx).sum(0) / width


def prunable(fractions: list[float], values, tolerance: float = TOLERANCE) -> np.ndarray | float:
    """The largest fraction reached before the metric first falls more than ``tolerance`` below the intact
    model (point 0); ``values`` (K,) or (K, R) for R resamples at once."""
    y = np.asarray(values, dtype=float)
    below = y < y[0] - tolerance - 1e-12  # (K, ...)
    first = np.where(below.any(0), below.argmax(0), len(fractions))  # first point below, K if none
    x = np.asarray(fractions, dtype=float)
    return x[np.maximum(first - 1, 0)]


class Bootstrap:
    """Resampling weights of N examples: (R, N) counts, the same for every curve so comparisons pair up."""

    def __init__(self, totals: np.ndarray, resamples: int = RESAMPLES, seed: int = 0):
        n = totals.shape[0]
        rng = np.random.default_rng(seed)
        self.weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float).T  # (N, R)
        self.denominators = np.maximum(totals @ self.weights, 1e-12)  # (R,)

    def metric(self, hits: np.ndarray) -> np.ndarray:
        """(K, R): the metric of each point in each resample."""
        return hits @ self.weights / self.denominators


def summarise(fractions: list[float], hits: np.ndarray, totals: np.ndarray, boot: Bootstrap) -> dict:
    """Metric, area and prunable fraction of one curve, each with its bootstrap 95% interval."""
    values, resampled = metric(hits, totals), boot.metric(hits)
    return {
        "metric": values.tolist(),
        "metric_ci": np.percentile(resampled, [2.5, 97.5], axis=1).tolist(),
        "auc": float(auc(fractions, values)),
        "auc_ci": np.percentile(auc(fractions, resampled), [2.5, 97.5]).tolist(),
        "prunable_within_1_point": float(prunable(fractions, values)),
        "prunable_ci": np.percentile(prunable(fractions, resampled), [2.5, 97.5]).tolist(),
    }


def against_random(
    fractions: list[float], hits: np.ndarray, randoms: list[np.ndarray], totals: np.ndarray, boot: Bootstrap
) -> dict:
    """The difference to the random orders' mean at each point, its noise, and where it loses."""
    random_mean = np.mean(randoms, axis=0)  # (K, N)
    diff = metric(hits, totals) - metric(random_mean, totals)  # (K,)
    se_boot = boot.metric(hits - random_mean).std(1)  # (K,)
    sd_seeds = np.std([metric(r, totals) for r in randoms], axis=0)
    noise = Z * np.sqrt(se_boot**2 + sd_seeds**2 / len(randoms))
    loses = [f for f, d, e in zip(fractions, diff, noise) if d < -e - 1e-12]
    return {
        "difference": diff.tolist(),
        "noise": noise.tolist(),
        "loses_at": loses,
        "worse_than_random": bool(loses),
    }


def random_summary(fractions: list[float], randoms: list[np.ndarray], totals: np.ndarray, boot: Bootstrap) -> dict:
    """The random orders: the mean curve (with its example bootstrap), the spread over seeds."""
    out = summarise(fractions, np.mean(randoms, axis=0), totals, boot)
    per_seed = np.array([metric(r, totals) for r in randoms])  # (S, K)
    out.update(
        seeds=len(randoms),
        std=per_seed.std(0).tolist(),
        min=per_seed.min(0).tolist(),
        max=per_seed.max(0).tolist(),
        prunable_per_seed=[float(prunable(fractions, v)) for v in per_seed],
    )
    return out


def choose(rankings: dict[str, dict], random: dict) -> tuple[str, str]:
    """The ranking to prune by: the largest area among those not worse than random (ties: the more prunable
    within one point, then the earlier listed); random order when every ranking loses to it."""
    fine = [name for name, r in rankings.items() if not r["worse_than_random"]]
    losers = [name for name in rankings if name not in fine]
    lost = f"; {', '.join(losers)} {'loses' if len(losers) == 1 else 'lose'} to random order" if losers else ""
    if not fine:
        return "random", f"every ranking loses to random order somewhere on the curve ({', '.join(losers)})"
    best = max(fine, key=lambda n: (rankings[n]["auc"], rankings[n]["prunable_within_1_point"], -fine.index(n)))
    r = rankings[best]
    return best, (
        f"largest area under the curve among rankings not worse than random ({r['auc']:.3f} against "
        f"{random['auc']:.3f} for random order; {r['prunable_within_1_point']:.0%} prunable within 1 point){lost}"
    )
