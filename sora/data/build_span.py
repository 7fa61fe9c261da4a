"""The span task's builder: questions about paragraphs, with answers, to windows of token ids.

Columns (roles): ``text`` the question, ``text_pair`` the paragraph, ``answer`` the answer text or a list of
reference texts, ``answer_start`` its first character (or a list, one per reference; optional). A start
that does not point at its answer text (SQuAD's files have a few, off by some characters) is recovered by
finding the text in the paragraph, the occurrence nearest the given start; what cannot be recovered is
counted, kept for evaluation (its references still score answers) and left out of training. Tables besides
the split ones (a built-in dataset's out-of-domain test sets) become extra splits of their own name.
"""

from __future__ import annotations

import numpy as np

from sora.data.builtin import Raw
from sora.data.duplicates import input_keys
from sora.data.encoding import tokenizer_for
from sora.data.prepared import Prepared
from sora.data.rows import check_texts
from sora.data.source import Source, handle_repeats, overlap
from sora.data.spans import Question, SpanExamples
from sora.data.splits import SPLITS, select_rows
from sora.data.table import Table
from sora.data.windows import windows


def build_span(src: Source) -> Prepared:
    cfg, cols = src.cfg, src.columns
    q_col, c_col = cols.get("text", "question"), cols.get("text_pair", "context")
    tables = {}
    for key, table in src.raw.tables.items():
        table, _ = check_texts(table, q_col, "text", src.name, src.errors)
        tables[key], _ = check_texts(table, c_col, "text_pair", src.name, src.errors)
    extra = {k: t for k, t in tables.items() if k not in (*SPLITS, "all")}
    main = {k: t for k, t in tables.items() if k not in extra}
    keys = {
        k: [f"{q}\n\n{c}" for q, c in zip(input_keys(t.columns[q_col], "text"), t.columns[c_col])]
        for k, t in main.items()
    }
    raw, keys, same, info = handle_repeats(src, Raw(main, src.raw.columns, None, src.raw.group), keys)
    chosen = select_rows(cfg, raw, cols, None, same)
    info["overlap"] = overlap(src, chosen, keys)
    rows = {k: (s.table, s.rows) for k, s in chosen.items()}
    rows.update({k: (t, _limited(np.arange(len(t)), cfg.shift_limit or cfg.limit)) for k, t in extra.items()})
    train_texts = [
        str(v)
        for i in rows["train"][1]
        for v in (rows["train"][0].columns[q_col][i], rows["train"][0].columns[c_col][i])
    ]
    tok = tokenizer_for(cfg, "span", src.tokenizer, train_texts, cfg.max_len)
    splits, recovery = {}, {}
    for key, (table, idx) in rows.items():
        questions, counts = _questions(table, idx, tok, cfg.max_len, cfg.stride, src)
        if key == "train":  # a target that cannot be found would teach the wrong tokens
            questions = [q for q in questions if any(w.start > 0 for w in q.windows)]
        splits[key], recovery[key] = SpanExamples(questions), counts
    info["answer_start"] = recovery
    info["windows"] = {k: v.windows for k, v in splits.items()}
    return Prepared(cfg, "span", "text", tok, None, splits, info=info)


def _limited(idx: np.ndarray, limit: int | None) -> np.ndarray:
    return idx[:limit] if limit is not None else idx


def _questions(table: Table, idx: np.ndarray, tok, max_len: int, stride: int, src: Source):
    """The questions at ``idx`` with their windows, and counts of answer starts as given, recovered, lost."""
    cols = src.columns
    q_col, c_col = cols.get("text", "question"), cols.get("text_pair", "context")
    a_col, s_col = cols.get("answer", "answers"), cols.get("answer_start", "answer_start")
    answers = table.require(a_col, "answer", src.name)
    starts = table.columns.get(s_col)
    counts = {"given": 0, "recovered": 0, "not_found": 0}
    out = []
    for i in idx:
        question, context = str(table.columns[q_col][i]), str(table.columns[c_col][i])
        texts = _as_list(answers[i])
        given = _as_list(starts[i]) if starts is not None else []
        span = None
        if texts:
            span, how = answer_span(context, str(texts[0]), given[0] if given else None)
            counts[how] += 1
        out.append(
            Question(question, context, [str(t) for t in texts], windows(tok, question, context, max_len, stride, span))
        )
    return out, counts


def answer_span(context: str, text: str, start: int | None) -> tuple[tuple[int, int] | None, str]:
    """(first character, end) of ``text`` in ``context`` and how it was found: at ``start`` as given, at the
    occurrence nearest it (recovered), or not at all (None, not_found)."""
    if start is not None and context[int(start) : int(start) + len(text)] == text:
        return (int(start), int(start) + len(text)), "given"
    found = list(_occurrences(context, text))
    if not found:
        return None, "not_found"
    near = min(found, key=lambda i: abs(i - int(start))) if start is not None else found[0]
    return (near, near + len(text)), "recovered"


def _occurrences(context: str, text: str):
    i = context.find(text) if text else -1
    while i >= 0:
        yield i
        i = context.find(text, i + 1)


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if isinstance(value, float) and np.isnan(value):
        return []
    return [value]
