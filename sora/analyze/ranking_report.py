"""The ranking check in the report: its verdict in the first lines, and a table per unit kind."""

from __future__ import annotations

import html


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def _ci(pair: list[float] | None) -> str:
    return "" if not pair else f" <span class='note'>[{pair[0] * 100:.1f}, {pair[1] * 100:.1f}]</span>"


def verdict_html(checks: dict) -> str:
    """The first lines of the report: which rankings lose to random, and which one pruning uses."""
    items = []
    for unit, c in checks.items():
        for name in c["flagged"]:
            at = ", ".join(f"{f:.0%}" for f in c["rankings"][name]["loses_at"])
            items.append(
                f"<li class='bad'><b>{unit} ranking '{html.escape(name)}' is worse than random order</b> "
                f"(beyond the noise) with {at} of the {unit} removed.</li>"
            )
        items.append(f"<li>{unit}: pruning uses <b>{html.escape(c['best'])}</b>: {html.escape(c['why'])}.</li>")
    return "<div class='card summary'><p><b>Ranking check</b></p><ul>" + "".join(items) + "</ul></div>"


def _row(name: str, r: dict, verdict: str) -> str:
    return (
        f"<tr><td>{html.escape(name)}</td><td>{_pct(r['auc'])}{_ci(r.get('auc_ci'))}</td>"
        f"<td>{_pct(r['prunable_within_1_point'])}{_ci(r.get('prunable_ci'))}</td><td class='l'>{verdict}</td></tr>"
    )


def checks_html(checks: dict, figure: str = "") -> str:
    """Per unit kind: every ranking's area under the curve and prunable fraction (bootstrap 95% intervals)."""
    parts = [
        "<h2>Ranking check</h2><div class='card'><p class='note'>Each ranking removes units least important "
        "first; the area is the mean metric over the fraction removed. Brackets: bootstrap 95% intervals over "
        "examples. A ranking is worse than random where it falls below the mean of the random orders by more "
        "than twice the combined noise (bootstrap of the paired difference, spread of the random orders).</p>" + figure
    ]
    for unit, c in checks.items():
        rows = []
        for name, r in c["rankings"].items():
            lost = ", ".join(f"{f:.0%}" for f in r["loses_at"])
            verdict = f"<span class='bad'>worse than random at {lost}</span>" if lost else "not worse than random"
            rows.append(_row(name + (" (used)" if name == c["best"] else ""), r, verdict))
        rows.append(_row(f"random ({c['random']['seeds']} orders)", c["random"], ""))
        if c.get("tuned"):
            rows.append(_row(f"{c['tuned']['of']}, gates tuned (Kwon et al.)", c["tuned"], ""))
        if c.get("reverse"):
            rows.append(_row(f"reverse of {c['reverse']['of']}", c["reverse"], ""))
        parts.append(
            f"<p>{unit}: {c['units']} units, {c['examples']:,} examples, {len(c['removed'])} points.</p>"
            "<table><tr><th class='l'>ranking</th><th>area under the curve</th><th>prunable within 1 point</th>"
            f"<th class='l'>against random</th></tr>{''.join(rows)}</table>"
        )
    return "".join(parts) + "</div>"
