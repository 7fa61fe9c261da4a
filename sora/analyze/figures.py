"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no display, no
global pyplot state), each saved as a PNG next to report.html.

matplotlib is imported by the functions that draw, not at the top: it takes 0.3-1.9 s
on 2 CPU cores, and this module is imported by every command (``sora.analyze`` holds a recipe's
``analyze:`` section) while only a report draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 96
ORDER_STYLE = {"importance": ("#1b7f3b", "-"), "random": ("#7f7f7f", "--"), "reverse": ("#c0392b", ":")}


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_png(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=DPI)
    return path.name


def importance_heatmaps(groups: list[dict], path: Path) -> str:
    """One row per attention group (self, cross ...): gradient importance and measured ablation.

    Each group: {"title", "layers": [labels], "gradient": (L, H) or None, "ablation": (L, H) or None,
    "ablation_label": str}; missing heads (pruned layers) are NaN.
    """
    from matplotlib.colors import TwoSlopeNorm

    cols = max(1, max(sum(g[k] is not None for k in ("gradient", "ablation")) for g in groups))
    width = max(max(g["gradient" if g["gradient"] is not None else "ablation"].shape[1] for g in groups), 2)
    fig = new_figure(cols * (2.4 + 0.6 * width), sum(1.5 + 0.45 * len(g["layers"]) for g in groups))
    axes = fig.subplots(len(groups), cols, squeeze=False)
    for row, g in enumerate(groups):
        panels = [
            ("gradient", "importance (Michel et al., per-layer norm)", "viridis", None),
            ("ablation", g.get("ablation_label", "metric change when ablated"), "RdBu", "diverging"),
        ]
        panels = [p for p in panels if g[p[0]] is not None]
        for col in range(cols):
            ax = axes[row, col]
            if col >= len(panels):
                ax.axis("off")
                continue
            key, label, cmap, kind = panels[col]
            m = np.asarray(g[key], dtype=float)
            norm = None
            if kind == "diverging":
                lim = max(np.nanmax(np.abs(m)) if np.isfinite(m).any() else 0.0, 1e-9)
                norm = TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
            im = ax.imshow(m, cmap=cmap, norm=norm, aspect="auto")
            mid = np.nanmean(m) if np.isfinite(m).any() else 0.0
            for (i, j), v in np.ndenumerate(m):
                if np.isfinite(v):
                    dark = v < mid if kind is None else abs(v) > 0.6 * lim
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.0e}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
            ax.set_xticks(range(m.shape[1]), [str(h) for h in range(m.shape[1])], fontsize=8)
            ax.set_yticks(range(len(g["layers"])), g["layers"], fontsize=8)
            ax.set_xlabel("head", fontsize=8)
            ax.set_title(f"{g['title']}\n{label}", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    return save_png(fig, path)


def attention_grid(
    patterns: list[np.ndarray],
    layer_labels: list[str],
    q_labels: list[str],
    k_labels: list[str],
    title: str,
    path: Path,
    types: dict[tuple[int, int], str] | None = None,
) -> str:
    """A grid of heads (rows: layers, columns: heads), each pattern (T queries x S keys)."""
    n_rows, n_cols = len(patterns), max((p.shape[0] for p in patterns), default=1)
    T, S = len(q_labels), len(k_labels)
    labelled = max(T, S) <= 32
    cell = 2.4 if labelled else 1.7
    fig = new_figure(n_cols * cell + 0.6, n_rows * cell + 0.8)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, layer in enumerate(patterns):
        for h in range(n_cols):
            ax = axes[i, h]
            if h >= layer.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(layer[h], cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            kind = (types or {}).get((i, h))
            ax.set_title(f"{layer_labels[i]} h{h}" + (f"\n{kind}" if kind else ""), fontsize=7)
            if labelled and h == 0:
                ax.set_yticks(range(T), q_labels, fontsize=5)
            else:
                ax.set_yticks([])
            if labelled and i == n_rows - 1:
                ax.set_xticks(range(S), k_labels, fontsize=5, rotation=90)
            else:
                ax.set_xticks([])
    fig.suptitle(title + "  (rows: queries, columns: keys)", fontsize=10)
    return save_png(fig, path)


def pair_attention_figure(matrix: list[list[float]], layers: list[str], path: Path) -> str:
    """Layers x heads: the share of attention question tokens put on the paragraph (one example)."""
    m = np.asarray(matrix, dtype=float)  # (L, H)
    fig = new_figure(1.6 + 0.45 * m.shape[1], 1.2 + 0.4 * m.shape[0])
    ax = fig.subplots()
    image = ax.imshow(m, cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_yticks(range(len(layers)), layers)
    ax.set_xticks(range(m.shape[1]))
    ax.set_xlabel("head")
    fig.colorbar(image, ax=ax, label="question -> paragraph attention")
    return save_png(fig, path)


def neuron_figure(samples: dict[str, np.ndarray], taylor: dict[str, np.ndarray], path: Path, bins: int = 60) -> str:
    """Per feed-forward layer: activation histogram (top) and neurons sorted by Taylor score (bottom)."""
    names = list(samples)
    fig = new_figure(max(3.2 * len(names), 5), 5.4)
    axes = fig.subplots(2, len(names), squeeze=False)
    for j, name in enumerate(names):
        ax = axes[0, j]
        values = samples[name]
        if values.size:
            ax.hist(values, bins=bins, color="#3a6ea5", log=True)
        ax.set_title(f"{name}\nactivations ({values.size:,} sampled)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax = axes[1, j]
        scores = np.sort(taylor.get(name, np.zeros(0)))[::-1]
        if scores.size and scores[0] > 0:
            ax.fill_between(np.arange(scores.size), scores / scores[0], color="#b8652d", alpha=0.8, linewidth=0)
            ax.set_ylim(0, 1.02)
        ax.set_title(f"Taylor score / max ({scores[0]:.2g}), sorted" if scores.size else "Taylor score", fontsize=8)
        ax.set_xlabel("neuron rank", fontsize=7)
        ax.tick_params(labelsize=7)
    return save_png(fig, path)


def pruning_figure(result: dict, metric: str, path: Path) -> str:
    """Metric vs fraction of heads removed, three orders (Michel et al. figure 3)."""
    fig = new_figure(6.4, 4.2)
    ax = fig.subplots()
    x = np.asarray(result["fraction"]) * 100
    for name, values in result["metric"].items():
        color, style = ORDER_STYLE[name]
        label = {
            "importance": f"{result.get('order_by', 'importance')} order (least important first)",
            "random": f"random order (mean of {result['random_seeds']})",
            "reverse": "reverse order (most important first)",
        }[name]
        ax.plot(x, np.asarray(values) * 100, style, color=color, marker="o", markersize=3, label=label)
        if name == "random":
            std = np.asarray(result["random_std"]) * 100
            ax.fill_between(x, np.asarray(values) * 100 - std, np.asarray(values) * 100 + std, color=color, alpha=0.15)
    base = result["metric"]["importance"][0] * 100
    ax.axhline(base - 1, color="black", linewidth=0.6, linestyle=(0, (1, 3)), label="intact - 1 point")
    ax.set_xlabel(f"heads removed (% of {result['heads']})")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Pruning heads one by one", fontsize=10)
    return save_png(fig, path)


def layer_ablation_figure(rows: list[tuple[str, float]], metric: str, path: Path) -> str:
    """Horizontal bars: metric change (points) when each block / attention / feed-forward layer is removed."""
    fig = new_figure(6.4, 0.9 + 0.28 * len(rows))
    ax = fig.subplots()
    names = [r[0] for r in rows][::-1]
    values = np.array([r[1] for r in rows][::-1]) * 100
    ax.barh(range(len(rows)), values, color=["#c0392b" if v < 0 else "#1b7f3b" for v in values])
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"{metric} change when removed (points)")
    ax.grid(axis="x", alpha=0.3)
    return save_png(fig, path)


def position_figure(name: str, sim: np.ndarray, kind: str, path: Path) -> str:
    fig = new_figure(4.8, 4.2)
    ax = fig.subplots()
    im = ax.imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_title(f"{name} ({kind}): cosine similarity", fontsize=9)
    ax.set_xlabel("position")
    ax.set_ylabel("position")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    return save_png(fig, path)


def particle_graph_figure(columns: list[dict], path: Path) -> str:
    """Boxes and arrows: each column is a stack drawn bottom (input) to top (head).

    columns: [{"title", "nodes": [(label, shade 0..1 or None)], "memory_from": index of the column whose top
    node feeds every "layers." node of this one (cross-attention memory), or None}]
    """
    from matplotlib import colormaps

    step = 1.25  # vertical distance between boxes
    height = max(len(c["nodes"]) for c in columns)
    fig = new_figure(3.4 * len(columns) + 0.6, 0.8 * height + 0.9)
    ax = fig.subplots()
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(-0.8, step * height - 0.2)
    ax.axis("off")
    cmap = colormaps["OrRd"]
    boxes: list[list] = []
    for x, column in enumerate(columns):
        ax.text(x, step * height - 0.55, column["title"], ha="center", va="center", fontsize=9, weight="bold")
        boxes.append([])
        for y, (label, shade) in enumerate(column["nodes"]):
            face = cmap(0.12 + 0.6 * shade) if shade is not None else "#eef2f7"
            box = ax.text(
                x,
                y * step,
                label,
                ha="center",
                va="center",
                fontsize=8,
                zorder=3,
                bbox=dict(boxstyle="round,pad=0.35", facecolor=face, edgecolor="#4a5a6a"),
            )
            if y:
                _arrow(ax, boxes[x][-1], box, (x, (y - 1) * step), (x, y * step), "#4a5a6a")
            boxes[x].append(box)
    for x, column in enumerate(columns):
        source = column.get("memory_from")
        if source is None:
            continue
        top = boxes[source][-1]
        for y, (label, _) in enumerate(column["nodes"]):
            if label.startswith("layers."):
                _arrow(
                    ax,
                    top,
                    boxes[x][y],
                    (source, (len(boxes[source]) - 1) * step),
                    (x, y * step),
                    "#8a6d3b",
                    dashed=True,
                )
    return save_png(fig, path)


def _arrow(ax, start, end, xy_start, xy_end, color, dashed=False) -> None:
    """An arrow clipped to the two text boxes (drawn after them, so their box outlines are known)."""
    ax.annotate(
        "",
        xy=xy_end,
        xytext=xy_start,
        zorder=4,
        arrowprops=dict(
            arrowstyle="->",
            color=color,
            linestyle="--" if dashed else "-",
            patchA=start.get_bbox_patch(),
            patchB=end.get_bbox_patch(),
            shrinkA=1,
            shrinkB=1,
            alpha=0.8 if dashed else 1.0,
        ),
    )
