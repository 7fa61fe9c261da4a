"""SQuAD v1.1's exact match and F1, with the official normalisation (the evaluation script's, line for line).

An answer and each reference are lower-cased, stripped of punctuation and of the articles a/an/the, and
their white space collapsed; exact match is 1 when the two are then equal, F1 is the harmonic mean of the
precision and recall of their words. A question scores its best over its references.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official order of the steps)."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def f1(prediction: str, reference: str) -> float:
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(reference).split()
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def best_over_references(prediction: str, references: list[str]) -> tuple[float, float]:
    """(exact match, F1) of one answer, each its best over the question's references (0, 0 without any)."""
    if not references:
        return 0.0, 0.0
    return max(exact_match(prediction, r) for r in references), max(f1(prediction, r) for r in references)
