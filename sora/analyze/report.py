"""Writing an analysis: ``analysis.json``, a self-contained ``report.html`` and its PNG figures.

The page uses no scripts and no network: images are relative PNG paths in the same folder and the
particle graph is Mermaid source in a ``<pre class="mermaid">`` block (readable as text, and
rendered wherever a Mermaid renderer is present) beside a PNG drawn with matplotlib. The folder
is written beside its destination and renamed into place, so it is never half-written.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from sora.analyze import alignment, figures, overlays
from sora.analyze.examples import example_json
from sora.analyze.naming import group_of, layer_label
from sora.analyze.ranking_figure import ranking_figure
from sora.analyze.ranking_report import checks_html, verdict_html
from sora.atomic import staged_dir
from sora.models.anatomy import block_parts, mermaid

JSON_NAME, HTML_NAME, MERMAID_NAME = "analysis.json", "report.html", "particle_graph.mmd"


def write_report(out_dir: str | Path, result: dict, extras: dict, model: nn.Module) -> Path:
    """Write the analysis to ``out_dir`` atomically, replacing what was there (``sora analyze`` first checks
    that ``--out`` is new, empty or an earlier analysis)."""
    with staged_dir(out_dir) as tmp:
        graph = mermaid(model)
        (tmp / MERMAID_NAME).write_text(graph)
        result["figures"] = draw_figures(tmp, result, extras, model)
        result["examples"] = [example_json(e) for e in extras.get("examples", []) if "kind" in e]
        result["figures"]["particle_graph_mermaid"] = MERMAID_NAME
        (tmp / JSON_NAME).write_text(json.dumps(result, indent=2, allow_nan=False, default=_jsonable) + "\n")
        (tmp / HTML_NAME).write_text(render_html(result, graph), encoding="utf-8")
    return Path(out_dir)


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


# Figures


def draw_figures(folder: Path, result: dict, extras: dict, model: nn.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    heads = result["heads"]
    metric = result["metric"] or "metric"
    groups = _heatmap_groups(heads, extras["attention_modules"], metric)
    if groups:
        out["importance_heatmap"] = figures.importance_heatmaps(groups, folder / "importance_heatmap.png")
    pairs = result.get("question_to_context")
    if pairs:
        out["question_to_context"] = figures.pair_attention_figure(
            pairs["matrix"], pairs["layers"], folder / "question_to_context.png"
        )
    if result.get("layers"):
        rows = [(r["name"], r["metric"]) for r in result["layers"]]
        out["layer_ablation"] = figures.layer_ablation_figure(rows, metric, folder / "layer_ablation.png")
    if result.get("rankings"):
        out["ranking_check"] = ranking_figure(result["rankings"], metric, folder / "ranking_check.png")
    if result.get("pruning"):
        out["pruning_curve"] = figures.pruning_figure(result["pruning"], metric, folder / "pruning_curve.png")
    if "neurons" in extras:
        out["neurons"] = figures.neuron_figure(
            extras["neurons"]["samples"], extras["neurons"]["taylor"], folder / "neurons.png"
        )
    out["positions"] = {}
    for i, (name, (kind, sim)) in enumerate(extras.get("positions", {}).items()):
        out["positions"][name] = figures.position_figure(name, sim, kind, folder / f"position_{i}.png")
    out["attention"] = [_example_figures(folder, i, example) for i, example in enumerate(extras.get("examples", []))]
    out["particle_graph"] = figures.particle_graph_figure(graph_columns(model, result), folder / "particle_graph.png")
    return out


def _example_figures(folder: Path, i: int, example: dict) -> dict[str, Any]:
    """An example's attention grids (attention_I_J.png, one per group) and the figure its kind draws over the
    input: overlay_I.png (image, audio) or alignment_I_K.png (one per alignment of a translation)."""
    caption = example["caption"]
    entry: dict[str, Any] = {"caption": caption, "kind": example.get("kind", "text"), "files": {}}
    for j, (group, g) in enumerate(example["groups"].items()):
        entry["files"][group] = figures.attention_grid(
            g["patterns"],
            g["layers"],
            g["q_labels"],
            g["k_labels"],
            f"{group}: {caption[:90]}",
            folder / f"attention_{i}_{j}.png",
            g["types"],
        )
    group = example["groups"].get("self-attention", {})
    if entry["kind"] == "image":
        path = folder / f"overlay_{i}.png"
        entry["overlay"] = overlays.image_figure(example, group["layers"], caption[:90], path, group["types"])
    elif entry["kind"] == "audio":
        entry["overlay"] = overlays.audio_figure(example, group["layers"], caption[:70], folder / f"overlay_{i}.png")
    elif entry["kind"] == "translation":
        entry["alignments"] = [
            {"title": a["title"], "file": alignment.alignment_figure(a, a["title"], folder / f"alignment_{i}_{k}.png")}
            for k, a in enumerate(example.get("alignments", []))
        ]
    return entry


def _heatmap_groups(heads: list[dict], modules: list[tuple[str, int, bool]], metric: str) -> list[dict]:
    groups: dict[str, dict] = {}
    for path, n_heads, cross in modules:
        g = groups.setdefault(group_of(path, cross), {"layers": [], "width": 0})
        g["layers"].append(layer_label(path))
        g["width"] = max(g["width"], n_heads)
    by_name = {r["name"]: r for r in heads}
    out = []
    for title, g in groups.items():
        grad = np.full((len(g["layers"]), g["width"]), np.nan)
        abl = np.full_like(grad, np.nan)
        for i, layer in enumerate(g["layers"]):
            path = next(p for p, _, c in modules if layer_label(p) == layer and group_of(p, c) == title)
            for h in range(g["width"]):
                row = by_name.get(f"{path}.head.{h}")
                if row is None:
                    continue
                if row.get("gradient") is not None:
                    grad[i, h] = row["gradient"]
                if "ablation" in row and row["ablation"]["metric"] is not None:
                    abl[i, h] = row["ablation"]["metric"] * 100
        has_grad, has_abl = np.isfinite(grad).any(), np.isfinite(abl).any()
        if has_grad or has_abl:
            out.append(
                {
                    "title": title,
                    "layers": g["layers"],
                    "gradient": grad if has_grad else None,
                    "ablation": abl if has_abl else None,
                    "ablation_label": f"{metric} change when ablated (points)",
                }
            )
    return out


def graph_columns(model: nn.Module, result: dict) -> list[dict]:
    """The particle graph as columns of boxes, blocks shaded by how much removing them costs."""
    cost = {r["name"]: max(-(r["metric"] or 0.0), 0.0) for r in result.get("layers", [])}
    top = max(cost.values(), default=0.0)

    def stack_column(prefix: str, stack, title: str, start: str) -> dict:
        embed = stack.embed
        source = "tokens" if embed.tokens is not None else "patches"
        nodes = [(start, None), (f"{prefix}embed.{source}\n+ position ({stack.config.position})", None)]
        for i, block in enumerate(stack.layers):
            name = f"{prefix}layers.{i}"
            shade = cost.get(name, 0.0) / top if top > 0 else None
            label = f"layers.{i}\n" + "\n".join(block_parts(block))
            if name in cost:
                label += f"\nremoved: {-cost[name] * 100:+.1f} pts" if cost[name] else "\nremoved: +0.0 pts"
            nodes.append((label, shade))
        if stack.final_norm is not None:
            nodes.append((f"{prefix}final_norm", None))
        return {"title": title, "nodes": nodes, "memory_from": None}

    head = getattr(model, "head", None)
    head_label = f"head: {type(head).__name__}" if head is not None else "hidden states"
    if hasattr(model, "encoder") and hasattr(model, "decoder"):
        enc = stack_column("encoder.", model.encoder, "encoder", "source")
        dec = stack_column("decoder.", model.decoder, "decoder", "target so far")
        dec["nodes"].append((head_label, None))
        dec["memory_from"] = 0
        return [enc, dec]
    column = stack_column("", model, model.config.arch, "input")
    column["nodes"].append((head_label, None))
    return [column]


# HTML

CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;color:#1d2430}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:34px 0 10px;border-bottom:2px solid #dde3ea;padding-bottom:4px}
.sub{color:#5b6676;margin:0 0 18px}.card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:12px 0}
.summary li{margin:5px 0}.kpi{display:flex;gap:14px;flex-wrap:wrap;margin:10px 0 4px}
.kpi div{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:10px 16px;min-width:140px}
.kpi b{display:block;font-size:1.35em}.kpi span{color:#5b6676;font-size:.85em}
table{border-collapse:collapse;font-size:.86em;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #e6eaef;text-align:right}
th{background:#eef2f7;position:sticky;top:0}td:first-child,th:first-child,td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#fafbfc}img{max-width:100%;height:auto;border:1px solid #e6eaef;border-radius:4px;background:#fff}
.tag{display:inline-block;padding:1px 7px;border-radius:10px;font-size:.85em;background:#eef2f7}
.tag.special-token-sink{background:#fde2c8}.tag.previous-token{background:#d5ecd4}.tag.positional{background:#d6e4f5}
.tag.broad{background:#ece0f3}.tag.mixed{background:#eeeeee}.good{color:#1b7f3b}.bad{color:#c0392b}
pre{background:#f0f3f7;padding:10px;border-radius:6px;overflow:auto;font-size:.8em}details{margin:8px 0}
.note{color:#5b6676;font-size:.9em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pts(x: float | None) -> str:
    if x is None:
        return "–"
    cls = "bad" if x < -0.005 else "good" if x > 0.005 else ""
    return f'<span class="{cls}">{x * 100:+.1f}</span>'


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def _img(name: str | None, alt: str) -> str:
    return f'<img src="{_e(name)}" alt="{_e(alt)}">' if name else ""


def render_html(r: dict, graph: str) -> str:
    fig = r.get("figures", {})
    metric = r["metric"] or "metric"
    m = r["model"]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sora analysis: {_e(m['source'])}</title>"
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>Particle analysis</h1><p class='sub'>{_e(m['source'])} · {_e(m['arch'])} ({_e(m['input'])}) · "
        f"{m['parameters']:,} parameters · {m['layers']} layers · {m['heads']} heads · {m['neurons']:,} neurons · "
        f"task {_e(r['task'])} · {r['data']['examples']:,} examples ({r['data']['batches']} batches of "
        f"the {_e(r['data']['split'])} split)</p>",
    ]
    if r.get("rankings"):
        parts.append(verdict_html(r["rankings"]))
    parts.append(_summary_html(r, metric))
    if fig.get("importance_heatmap"):
        parts.append(
            "<h2>Head importance</h2><div class='card'><p class='note'>Left: expected |dL/d gate| per head "
            "(Michel et al. 2019), normalised per layer: larger means the loss depends more on that head. "
            f"Right: measured change of {_e(metric)} (points) when the head alone is removed "
            f"({_e(r['config']['ablation'])} ablation).</p>{_img(fig['importance_heatmap'], 'head importance')}</div>"
        )
    if r["heads"]:
        parts.append(_head_table(r, metric))
    if r.get("pruning"):
        parts.append(_pruning_html(r, metric, fig))
    if r.get("rankings"):
        parts.append(checks_html(r["rankings"], _img(fig.get("ranking_check"), "ranking check")))
    if r.get("question_to_context"):
        parts.append(_pairs_html(r["question_to_context"], fig))
    if fig.get("attention"):
        parts.append("<h2>Attention patterns</h2>")
        parts.extend(_example_html(ex) for ex in fig["attention"])
    if r.get("layers"):
        parts.append(
            "<h2>Layers</h2><div class='card'><p class='note'>Change of the metric when a whole block is "
            "skipped (its contribution to the residual stream removed), or only its attention or "
            f"feed-forward sub-layer.</p>{_img(fig.get('layer_ablation'), 'layer ablation')}"
            + _layer_table(r["layers"], metric)
            + "</div>"
        )
    if "neurons" in r:
        parts.append(_neurons_html(r, fig))
    if fig.get("positions"):
        parts.append(
            "<h2>Position encodings</h2><div class='card'><p class='note'>Cosine similarity of position "
            "vectors: a wide bright band means neighbouring positions look alike.</p>"
        )
        for name, file in fig["positions"].items():
            near = r["positions"][name]["similarity_by_distance"]
            far = near[-1] if near else None
            parts.append(
                f"<p>{_e(name)}: similarity of neighbours {_f(near[1] if len(near) > 1 else None, 2)}, "
                f"at distance {len(near) - 1}: {_f(far, 2)}</p>{_img(file, name)}"
            )
        parts.append("</div>")
    parts.append(
        "<h2>Particle graph</h2><div class='card'><p class='note'>Blocks are shaded by the metric lost "
        f"when they are skipped.</p>{_img(fig.get('particle_graph'), 'particle graph')}"
        f"<details><summary>Mermaid source ({_e(MERMAID_NAME)})</summary>"
        f"<pre class='mermaid'>{_e(graph)}</pre></details></div>"
    )
    if r.get("agreement"):
        parts.append(_agreement_html(r["agreement"]))
    if r.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in r["notes"]) + "</ul>")
    parts.append(
        f"<h2>Settings</h2><pre>{_e(json.dumps(r['config'], indent=2))}</pre>"
        f"<p class='note'>Every figure is also in <code>{JSON_NAME}</code>.</p></main></body></html>"
    )
    return "\n".join(parts)


EXAMPLE_NOTES = {
    "image": "What each head's CLS token attends to, as a heat map over the image (one row per layer, one "
    "column per head), and attention rollout (Abnar &amp; Zuidema 2020: attention followed through the layers "
    "up to that row, with the residual path as half identity). Without a CLS token: the attention each patch "
    "receives. Every map is scaled to its own maximum, written in its corner.",
    "audio": "The log-mel spectrogram (top) and, per layer, the attention each time patch gets from every head "
    "(rows; from the CLS token where the model has one, else averaged over queries), on the same time axis "
    "and scaled to each head's maximum.",
    "translation": "Cross-attention alignment: source tokens (columns) against the target tokens each decoder "
    "position produces (rows), for every cross-attention head and their average; each row sums to 1 "
    "(black: all of it on one source token).",
}


def _example_html(ex: dict) -> str:
    """One example's card: the figure its input kind draws, then its attention grids (folded away for images,
    audio and translation, where the figure above says more)."""
    kind = ex.get("kind", "text")
    parts = [f"<div class='card'><p>{_e(ex['caption'])}</p>"]
    if kind in EXAMPLE_NOTES:
        parts.append(f"<p class='note'>{EXAMPLE_NOTES[kind]}</p>")
    if ex.get("overlay"):
        parts.append(_img(ex["overlay"], f"{kind} attention overlay"))
    for a in ex.get("alignments", []):
        parts.append(f"<p class='note'>{_e(a['title'])}</p>{_img(a['file'], a['title'])}")
    grids = "".join(f"<p class='note'>{_e(group)}</p>{_img(name, group)}" for group, name in ex["files"].items())
    if kind == "text":
        parts.append(grids)
    elif grids:
        parts.append(f"<details><summary>attention patterns, position by position</summary>{grids}</details>")
    parts.append("</div>")
    return "".join(parts)


def _summary_html(r: dict, metric: str) -> str:
    s, base = r["summary"], r["baseline"]
    kpis = []
    if base.get("metric") is not None:
        kpis.append(f"<div><b>{_pct(base['metric'])}</b><span>{_e(metric)}</span></div>")
        kpis.append(f"<div><b>{_f(base['loss'])}</b><span>loss (nats)</span></div>")
    if "prunable_within_1_point" in s:
        kpis.append(
            f"<div><b>{_pct(s['prunable_within_1_point']['importance'])}</b><span>of heads prunable "
            f"within 1 point</span></div>"
        )
    items = []
    if "most_important_heads" in s:
        items.append(
            f"Most important heads: <b>{_e(', '.join(s['most_important_heads']))}</b>; least important: "
            f"{_e(', '.join(s['least_important_heads']))}."
        )
    if "most_harmful_head_ablation" in s:
        h = s["most_harmful_head_ablation"]
        items.append(
            f"Removing <b>{_e(h['name'])}</b> alone costs the most: {_pts(h['metric_change'])} points of {_e(metric)}."
        )
    if "most_important_block" in s:
        b = s["most_important_block"]
        items.append(f"Skipping block <b>{_e(b['name'])}</b> costs {_pts(b['metric_change'])} points.")
    if "head_types" in s:
        counts = ", ".join(f"{n} {_e(t)}" for t, n in s["head_types"].items())
        items.append(f"Head types: {counts}.")
    if "prunable_within_1_point" in s:
        p = s["prunable_within_1_point"]
        items.append(
            f"Heads can be switched off in {_e(r['pruning']['order_by'])} order up to <b>{_pct(p['importance'])}</b> "
            "before "
            f"{_e(metric)} drops more than 1 point (random order: {_pct(p['random'])}, reverse: "
            f"{_pct(p['reverse'])})."
        )
        half = s["pruning_at"].get("50%")
        if half:
            items.append(
                f"With half the heads removed: {_e(r['pruning']['order_by'])} order {_pct(half['importance'])}, random "
                f"{_pct(half['random'])}, reverse {_pct(half['reverse'])}."
            )
    agree = r.get("agreement", {}).get("heads", {})
    rho = agree.get("gradient ~ ablation_loss")
    if rho is not None:
        items.append(f"Gradient importance and measured ablation agree with Spearman ρ = {rho:.2f}.")
    return (
        f"<div class='kpi'>{''.join(kpis)}</div><div class='card summary'><ul>"
        + "".join(f"<li>{i}</li>" for i in items)
        + "</ul></div>"
    )


def _head_table(r: dict, metric: str) -> str:
    rows = sorted(r["heads"], key=lambda x: (-(x.get("gradient") or 0.0), x["name"]))
    head = (
        "<tr><th class='l'>head</th><th>rank</th><th>importance</th><th>Δ loss</th>"
        f"<th>Δ {_e(metric)} (pts)</th><th class='l'>type</th><th>entropy</th><th>norm. entropy</th>"
        "<th>distance</th><th>self</th><th>prev</th><th>special</th><th>offset</th></tr>"
    )
    body = []
    for x in rows:
        a, ab = x.get("attention", {}), x.get("ablation", {})
        kind = x.get("type")
        tag = f"<span class='tag {_e(kind.replace(' ', '-'))}'>{_e(kind)}</span>" if kind else "–"
        offset = a.get("offset")
        body.append(
            f"<tr><td>{_e(x['name'])}</td><td>{x.get('rank', '–')}</td><td>{_f(x.get('gradient'))}</td>"
            f"<td>{_f(ab.get('loss'), 4)}</td><td>{_pts(ab.get('metric'))}</td><td class='l'>{tag}</td>"
            f"<td>{_f(a.get('entropy'), 2)}</td><td>{_f(a.get('norm_entropy'), 2)}</td><td>{_f(a.get('distance'), 1)}</td>"
            f"<td>{_f(a.get('self'), 2)}</td><td>{_f(a.get('prev'), 2)}</td><td>{_f(a.get('special'), 2)}</td>"
            f"<td>{'–' if offset is None else f'{offset:+d}'}</td></tr>"
        )
    return (
        "<h2>Heads</h2><div class='card'><p class='note'>Sorted by importance. Type rules: special-token sink "
        "(≥ 0.5 of attention on special tokens), previous-token (≥ 0.5 on the token before), positional (≥ 0.5 "
        "at one fixed offset), broad (normalised entropy ≥ 0.75), otherwise mixed.</p>"
        f"<table>{head}{''.join(body)}</table></div>"
    )


def _pruning_html(r: dict, metric: str, fig: dict) -> str:
    p = r["pruning"]
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_pct(v['importance'])}</td><td>{_pct(v['random'])}</td>"
        f"<td>{_pct(v['reverse'])}</td></tr>"
        for k, v in p["at"].items()
    )
    w = p["prunable_within_1_point"]
    rows += (
        f"<tr><td>prunable within 1 point</td><td>{_pct(w['importance'])}</td><td>{_pct(w['random'])}</td>"
        f"<td>{_pct(w['reverse'])}</td></tr>"
    )
    return (
        "<h2>Pruning curve</h2><div class='card'><p class='note'>Heads switched off one by one (gate 0) in "
        f"order of {_e(p['order_by'])} importance, least important first; in random order (mean of "
        f"{p['random_seeds']} seeds, band: ±1 std); and in reverse order (Michel et al. 2019, figure 3).</p>"
        f"{_img(fig.get('pruning_curve'), 'pruning curve')}<table><tr><th class='l'>heads removed</th>"
        f"<th>importance order</th><th>random order</th><th>reverse order</th></tr>{rows}</table></div>"
    )


def _layer_table(layers: list[dict], metric: str) -> str:
    body = "".join(
        f"<tr><td>{_e(x['name'])}</td><td>{_f(x['loss'], 4)}</td><td>{_pts(x['metric'])}</td>"
        f"<td>{_pct(x['metric_after'])}</td></tr>"
        for x in layers
    )
    return (
        f"<table><tr><th class='l'>removed</th><th>Δ loss</th><th>Δ {_e(metric)} (pts)</th>"
        f"<th>{_e(metric)} after</th></tr>{body}</table>"
    )


def _neurons_html(r: dict, fig: dict) -> str:
    rows = []
    for name, n in r["neurons"].items():
        top = ", ".join(
            f"{t['name'].rsplit('.', 1)[-1]} ({_f(t.get('taylor', t['mean_abs']), 4)})" for t in n["top"][:5]
        )
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{n['neurons']}</td><td>{n['rarely_active']}</td><td class='l'>{_e(top)}</td></tr>"
        )
    return (
        "<h2>Neurons</h2><div class='card'><p class='note'>Top: distribution of feed-forward activations "
        "(hook_post) at real positions. Bottom: neurons sorted by Taylor score |Σ activation × gradient| "
        "(Molchanov et al. 2017): a steep drop means a few neurons carry most of the effect.</p>"
        f"{_img(fig.get('neurons'), 'neurons')}<table><tr><th class='l'>layer</th><th>neurons</th>"
        "<th>active &lt; 1% of positions</th><th class='l'>top neurons (Taylor score)</th></tr>"
        f"{''.join(rows)}</table></div>"
    )


def _agreement_html(agreement: dict) -> str:
    rows = "".join(
        f"<tr><td>{_e(kind)}</td><td class='l'>{_e(pair)}</td><td>{_f(rho, 2)}</td></tr>"
        for kind, pairs in agreement.items()
        for pair, rho in pairs.items()
    )
    return (
        "<h2>Agreement between methods</h2><div class='card'><p class='note'>Spearman rank correlation between "
        "rankings of the same particles (1: identical order; – when a ranking is constant).</p>"
        f"<table><tr><th class='l'>particles</th><th class='l'>methods</th><th>ρ</th></tr>{rows}</table></div>"
    )


def _pairs_html(pairs: dict, fig: dict) -> str:
    """Which heads read the paragraph from the question (sora.analyze.pairs)."""
    ex = pairs["example"]
    top = sorted(pairs["heads"].items(), key=lambda kv: -kv[1]["example"])[:5]
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{v['example']:.3f}</td><td>{v['mean']:.3f}</td></tr>" for name, v in top
    )
    question = f" ({_e(ex['question'])})" if ex.get("question") else ""
    return (
        "<h2>Question to paragraph</h2><div class='card'><p class='note'>Share of each head's attention that the "
        f"question's {ex['question_tokens']} tokens{question} put on the paragraph's {ex['context_tokens']} tokens, "
        f"for one example; the table also gives the mean over {pairs['windows']} windows.</p>"
        f"{_img(fig.get('question_to_context'), 'question to paragraph attention')}"
        f"<table><tr><th>head</th><th>example</th><th>mean</th></tr>{rows}</table></div>"
    )
