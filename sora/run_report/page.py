"""The run report's HTML: one self-contained page (no script, no network, figures inline as base64 PNG).

Each part is drawn only when the run has what it shows: a recipe without analyze, compress or export
sections gets a page without those sections, not empty ones. Every value from disk goes through
``html.escape``; links are relative to the run folder, so the folder can move.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from sora.analyze.report import CSS as ANALYSIS_CSS
from sora.run_report.commands import Command
from sora.run_report.curves import Curves, curves_png
from sora.run_report.read import COMPRESSED, RunFolder, machine_line, speedups

STAGE_NAMES = {"fp32": "trained", "pruned": "pruned", "int8": "int8", COMPRESSED: "pruned + int8"}
CSS = ANALYSIS_CSS + "code{background:#eef2f7;padding:1px 5px;border-radius:4px}.cmd td{text-align:left}\n"


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else "–" if x is None else f"{x:,}" if isinstance(x, int) else _e(x)


def _mb(n_bytes: int | None) -> str:
    return "–" if n_bytes is None else f"{n_bytes / 1e6:.2f} MB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _link(href: str, text: str) -> str:
    return f'<a href="{_e(href)}">{_e(text)}</a>'


def _inline_png(data: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def render_page(run: RunFolder, curves: Curves, commands: list[Command]) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Sora run: {_e(run.name)}</title><style>{CSS}</style></head><body><main>",
        _header(run),
        _kpis(run),
        _stages(run),
    ]
    if curves:
        parts.append(f"<h2>Training</h2><div class='card'>{_inline_png(curves_png(curves), 'training curves')}")
        parts.append(f"{_training_note(run)}</div>")
    parts.append(_metrics_table(run))
    if run.analysis is not None:
        parts.append(_analysis(run))
    if run.compression is not None:
        parts.append(_compression(run))
    if run.export is not None:
        parts.append(_export(run))
    parts.append(_commands(commands))
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _header(run: RunFolder) -> str:
    facts = [
        f"task {_e(run.task)}",
        f"dataset {_e(run.metrics.get('dataset', '?'))}",
        f"{_num(run.metrics.get('parameters'))} parameters",
    ]
    if run.run.get("started"):
        facts.append(f"started {_e(run.run['started'])}")
    if run.run.get("machine"):
        facts.append(f"on {_e(machine_line(run.run['machine']))}")
    return f"<h1>{_e(run.name)}</h1><p class='sub'>{' · '.join(facts)}</p>"


def _kpis(run: RunFolder) -> str:
    train = run.metrics.get("train") or {}
    cards = [(_num(run.score), f"{run.metric} ({run.split})")]
    baseline = run.metrics.get("baseline") or {}
    if run.metric in baseline:
        cards.append((_num(baseline[run.metric]), f"baseline: {baseline.get('method', '')}"))
    cards.append((duration(run.train_seconds), f"training: {_num(train.get('steps'))} steps, {train.get('stopped')}"))
    cards.append((_mb(run.model_bytes), f"model: {_num(run.metrics.get('parameters'))} parameters"))
    if run.compressed:
        value = (run.compressed.get("metrics") or {}).get(run.metric)
        smaller, faster = run.compressed.get("smaller", 0), speedups(run.compressed)
        cards.append((_num(value), f"pruned+int8 {run.metric}: {smaller:.1f}x smaller, {faster} faster"))
    items = "".join(f"<div><b>{value}</b><span>{_e(label)}</span></div>" for value, label in cards)
    return f"<div class='kpi'>{items}</div>"


def _stages(run: RunFolder) -> str:
    """Each stage's model: metric, size and (when compression measured it) latency and speed-up."""
    variants = (run.compression or {}).get("variants") or {
        "fp32": {
            "metrics": {run.metric: run.score},
            "parameters": run.metrics.get("parameters"),
            "bytes": run.model_bytes,
        }
    }
    batches = [str(b) for b in (run.compression or {}).get("latency_batches", [])]
    head = [f"{run.metric} ({(run.compression or {}).get('eval_split', run.split)})", "parameters", "size"]
    head += ["smaller"] if run.compression else []
    head += [f"latency b{b}" for b in batches]
    rows = []
    for key, v in variants.items():
        cells = [
            _num((v.get("metrics") or {}).get(run.metric)),
            _num(v.get("parameters")),
            _mb(v.get("bytes")),
        ]
        cells += [f"{v.get('smaller', 1.0):.2f}x"] if run.compression else []
        for b in batches:
            seconds, speedup = (v.get("latency_s") or {}).get(b), (v.get("speedup") or {}).get(b)
            cells.append("–" if seconds is None else f"{seconds * 1e3:.1f} ms ({speedup:.2f}x)")
        rows.append(f"<tr><td>{_e(STAGE_NAMES.get(key, key))}</td>{''.join(f'<td>{c}</td>' for c in cells)}</tr>")
    header = "".join(f"<th>{_e(h)}</th>" for h in ["model", *head])
    return f"<h2>Stages</h2><div class='card'><table><tr>{header}</tr>{''.join(rows)}</table></div>"


def _training_note(run: RunFolder) -> str:
    train, best = run.metrics.get("train") or {}, run.metrics.get("best") or {}
    facts = [
        f"{_num(train.get('steps'))} steps ({_num(train.get('epochs'))} epochs), stopped by {_e(train.get('stopped'))}",
        f"best validation {_e(best.get('metric'))} {_num(best.get('value'))} at step {_num(best.get('step'))}",
        f"{_num(train.get('examples_per_s'))} examples/s, {_e(train.get('precision', ''))}",
    ]
    return f"<p class='note'>{'; '.join(facts)}.</p>"


def _metrics_table(run: RunFolder) -> str:
    rows = [
        (label, run.metrics[key])
        for key, label in (("validation", "validation (best)"), ("test", "test"), ("baseline", "baseline"))
        if run.metrics.get(key)
    ]
    keys = list(dict.fromkeys(k for _, m in rows for k, v in m.items() if isinstance(v, (int, float))))
    keys = [k for k in keys if k != "seconds"]
    if not rows or not keys:
        return ""
    header = "".join(f"<th>{_e(k)}</th>" for k in ["split", *keys])
    body = "".join(
        f"<tr><td>{_e(label)}</td>{''.join(f'<td>{_num(m.get(k))}</td>' for k in keys)}</tr>" for label, m in rows
    )
    return f"<h2>Metrics</h2><div class='card'><table><tr>{header}</tr>{body}</table></div>"


def _analysis(run: RunFolder) -> str:
    summary = run.analysis.get("summary") or {}
    items = []
    for key, label in (("most_important_heads", "most important heads"), ("least_important_heads", "least important")):
        if summary.get(key):
            items.append(f"<li>{label}: {', '.join(f'<code>{_e(h)}</code>' for h in summary[key])}</li>")
    prunable = (summary.get("prunable_within_1_point") or {}).get("importance")
    if prunable is not None:
        items.append(f"<li>{prunable:.0%} of heads removable (importance order) within 1 point of the metric</li>")
    curve = _png_file(run.path / "analysis" / "pruning_curve.png", "pruning curve")
    link = _link("analysis/report.html", "the particle report (analysis/report.html)")
    return f"<h2>Analysis</h2><div class='card'><ul class='summary'>{''.join(items)}</ul>{curve}<p>{link}</p></div>"


def _compression(run: RunFolder) -> str:
    plot = _png_file(run.path / "compressed" / "plot.png", "metric against size and speed")
    links = [_link("compressed/report.md", "the compression table (compressed/report.md)")]
    links += [
        _link(f"compressed/{Path(p).name}/", Path(p).name) for p in (run.compression.get("folders") or {}).values()
    ]
    note = _e(run.compression.get("latency_method", ""))
    return f"<h2>Compression</h2><div class='card'>{plot}<p class='note'>{note}</p><p>{' · '.join(links)}</p></div>"


def _export(run: RunFolder) -> str:
    graphs = ", ".join(f"<code>{_e(g.get('file'))}</code>" for g in (run.export.get("graphs") or {}).values())
    parity = (run.export.get("parity") or {}).get("fp32_max_abs_diff") or {}
    worst = max(parity.values(), default=None)
    facts = f"{graphs} ({_e(run.export.get('format'))}, {_e(run.export.get('precision'))})"
    if worst is not None:
        facts += f", at most {worst:.2g} from torch on {_e(run.export['parity'].get('inputs', ''))}"
    return f"<h2>Export</h2><div class='card'><p>{facts}</p><p>{_link('export/', 'the export folder')}</p></div>"


def _commands(commands: list[Command]) -> str:
    rows = "".join(f"<tr><td><code>{_e(c.line)}</code></td><td>{_e(c.why)}</td></tr>" for c in commands)
    return f"<h2>Use it</h2><div class='card'><table class='cmd'>{rows}</table></div>"


def _png_file(path: Path, alt: str) -> str:
    """A figure another stage drew, inlined so the page stands alone (nothing when it is missing)."""
    if not path.is_file():
        return ""
    return _inline_png(base64.b64encode(path.read_bytes()).decode("ascii"), alt)
