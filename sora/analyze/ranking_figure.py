"""The ranking check drawn: every ranking's pruning curve against random order (band: min to max of the seeds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sora.analyze.figures import new_figure, save_png

COLORS = ("#1b7f3b", "#3a6ea5", "#b8652d", "#8e44ad", "#16a085", "#d35400")


def ranking_figure(checks: dict, metric: str, path: Path) -> str:
    """One panel per unit kind (heads, neurons): metric (%) against the fraction removed."""
    fig = new_figure(5.6 * len(checks), 4.0)
    axes = fig.subplots(1, len(checks), squeeze=False)[0]
    for ax, (unit, c) in zip(axes, checks.items()):
        x = np.asarray(c["fraction"]) * 100
        r = c["random"]
        ax.fill_between(x, np.asarray(r["min"]) * 100, np.asarray(r["max"]) * 100, color="#7f7f7f", alpha=0.2)
        ax.plot(x, np.asarray(r["metric"]) * 100, "--", color="#7f7f7f", label=f"random ({r['seeds']} orders)")
        for color, (name, curve) in zip(COLORS, c["rankings"].items()):
            style = ":" if curve["worse_than_random"] else "-"
            label = name + (" (worse than random)" if curve["worse_than_random"] else "")
            ax.plot(x, np.asarray(curve["metric"]) * 100, style, color=color, marker="o", markersize=2.5, label=label)
        if c.get("tuned"):
            ax.plot(x, np.asarray(c["tuned"]["metric"]) * 100, "-", color="black", lw=0.8, label="tuned gates")
        if c.get("reverse"):
            rev = np.asarray(c["reverse"]["metric"]) * 100
            ax.plot(x, rev, ":", color="#c0392b", label=f"reverse of {c['reverse']['of']}")
        base = c["random"]["metric"][0] * 100
        ax.axhline(base - 1, color="black", linewidth=0.6, linestyle=(0, (1, 3)))
        ax.set_xlabel(f"{unit} removed (%)", fontsize=8)
        ax.set_ylabel(f"{metric} (%)", fontsize=8)
        ax.set_title(f"{unit}: {c['examples']:,} examples, chosen: {c['best']}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, loc="lower left")
        ax.grid(alpha=0.3)
    return save_png(fig, path)
