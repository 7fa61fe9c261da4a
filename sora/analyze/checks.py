"""The ranking check: every ranking's pruning curve against random and reverse order, and the one to prune by.

Units (heads, or neurons) are switched off in each ranking's order, least important first, and the metric
recorded at each count on the check examples (the whole split when it is small). Random orders give the
yardstick; the reverse of the ranking shown gives the other bound. sora.analyze.curve_stats says how a
ranking is judged; ``best`` is what compression prunes by, and ``why`` says so in words.
"""

from __future__ import annotations

import numpy as np

from sora.analyze.curve_stats import Bootstrap, against_random, choose, random_summary, summarise
from sora.analyze.masking import MaskedEval

MARKS = (0.25, 0.5, 0.75)


def even_counts(n: int, steps: int | None, marks: bool = True) -> list[int]:
    """Units removed at each point: every count, or ``steps`` even ones, plus the 25/50/75% marks."""
    counts = set(range(n + 1)) if steps is None or steps >= n else {round(i * n / steps) for i in range(steps + 1)}
    return sorted(counts | ({round(f * n) for f in MARKS} if marks else set()))


def order_of(scores: dict[str, float], units: list[str]) -> list[str]:
    """Least important first; ties broken by name so an order is reproducible."""
    return sorted(units, key=lambda u: (scores[u], u))


def random_scores(units: list[str], seed: int) -> dict[str, float]:
    """Scores that order ``units`` at random (what compression uses when every ranking loses to random)."""
    perm = np.random.default_rng(seed).permutation(len(units))
    return {u: float(p) for u, p in zip(units, perm)}


def check_rankings(
    evaluator: MaskedEval,
    units: list[str],
    rankings: dict[str, dict[str, float]],
    *,
    steps: int | None = None,
    seeds: int = 5,
    seed: int = 0,
    shown: str | None = None,
    marks: bool = True,
) -> dict:
    """Curves, areas, prunable fractions and the verdict against random of every ranking; the reverse curve of
    ``shown`` (default: the best ranking)."""
    n = len(units)
    counts = even_counts(n, steps, marks)
    fractions = [k / n for k in counts]
    boot = Bootstrap(evaluator.totals, seed=seed)
    rng = np.random.default_rng(seed)
    randoms = [evaluator.curve([units[i] for i in rng.permutation(n)], counts) for _ in range(max(seeds, 1))]
    random = random_summary(fractions, randoms, evaluator.totals, boot)
    checked = {}
    for name, scores in rankings.items():
        hits = evaluator.curve(order_of(scores, units), counts)
        checked[name] = summarise(fractions, hits, evaluator.totals, boot) | against_random(
            fractions, hits, randoms, evaluator.totals, boot
        )
    best, why = choose(checked, random)
    shown = shown if shown in rankings else best if best in rankings else next(iter(rankings), None)
    tuned = None
    if evaluator.tune is not None and best in rankings:  # the chosen order with the kept units' gates tuned
        hits = evaluator.curve(order_of(rankings[best], units), counts, tuned=True)
        tuned = summarise(fractions, hits, evaluator.totals, boot) | {"of": best}
        tuned |= against_random(fractions, hits, randoms, evaluator.totals, boot)
    reverse = None
    if shown is not None:
        hits = evaluator.curve(order_of(rankings[shown], units)[::-1], counts)
        reverse = summarise(fractions, hits, evaluator.totals, boot) | {"of": shown}
    return {
        "units": n,
        "examples": int(evaluator.totals.shape[0]),
        "removed": counts,
        "fraction": fractions,
        "rankings": checked,
        "random": random,
        "reverse": reverse,
        "tuned": tuned,
        "best": best,
        "why": why,
        "shown": shown,
        "shown_order": order_of(rankings[shown], units) if shown is not None else None,
        "flagged": [name for name, r in checked.items() if r["worse_than_random"]],
        "scores": rankings[best] if best in rankings else random_scores(units, seed),
    }


def headline(check: dict, unit: str) -> list[str]:
    """The check in a few plain lines: flagged rankings first, then the choice."""
    lines = []
    for name in check["flagged"]:
        at = ", ".join(f"{f:.0%}" for f in check["rankings"][name]["loses_at"])
        lines.append(f"{unit} ranking '{name}' is WORSE THAN RANDOM order (beyond the noise) at {at} removed")
    lines.append(f"{unit}: pruning by '{check['best']}': {check['why']}")
    return lines
