"""The compression report: one table row per variant, and a plot of metric against latency."""

from __future__ import annotations

from pathlib import Path

from sora.atomic import staged_file


def table(report: dict) -> str:
    """A Markdown table: metric, parameters, size on disk, latency ratios to fp32 (higher = faster)."""
    metric = report["metric"]
    batches = report["latency_batches"]
    head = ["variant", metric, "parameters", "size (MB)", "smaller"] + [f"speed-up b{b}" for b in batches]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v in report["variants"].items():
        value = v["metrics"].get(metric)
        cells = [name, _fmt(value), f"{v['parameters']:,}", f"{v['bytes'] / 1e6:.2f}", f"{v['smaller']:.2f}x"]
        cells += [f"{v['speedup'][str(b)]:.2f}x" for b in batches]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def plot(report: dict, path: str | Path) -> Path:
    """Metric (y) against latency as a fraction of fp32 (x), one panel per batch size."""
    import matplotlib  # 0.3-1.9 s to import: only this plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, batches = report["metric"], report["latency_batches"]
    fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches), 3.6), squeeze=False)
    for ax, b in zip(axes[0], batches):
        for name, v in report["variants"].items():
            x, y = 1.0 / v["speedup"][str(b)], v["metrics"].get(metric)
            if y is None:
                continue
            ax.scatter([x], [y], s=40)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(f"latency / fp32 (batch {b})")
        ax.set_ylabel(metric)
        ax.axvline(1.0, color="grey", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{report.get('name', 'model')}: {metric} vs latency", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    try:
        with staged_file(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path
