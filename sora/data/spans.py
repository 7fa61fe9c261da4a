"""Question-answering examples: a question, its paragraph cut into windows, and the reference answers.

An example is a question; the loader batches questions, and a batch holds every window of its questions
(sora.data.windows), so that the best answer over a question's windows is found inside one batch. The
batch contract is the span task's (sora.tasks.question_answering).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sora.data.datasets import Examples, pad_ids
from sora.data.windows import Window


@dataclass
class Question:
    question: str
    context: str
    answers: list[str]  # the reference texts (SQuAD's dev set has about three per question)
    windows: list[Window]


class SpanExamples(Examples):
    def __init__(self, questions: list[Question]):
        self.questions = questions
        self.lengths = np.array([max(len(w.ids) for w in q.windows) for q in questions], dtype=np.int64)

    def batch(self, indices, rng=None):
        picked = [self.questions[int(i)] for i in indices]
        windows = [(k, w) for k, q in enumerate(picked) for w in q.windows]
        inputs, valid = pad_ids([w.ids for _, w in windows])
        segments, _ = pad_ids([w.segments for _, w in windows])
        offsets = torch.full((*inputs.shape, 2), -1, dtype=torch.long)  # (W, T, 2)
        for row, (_, w) in enumerate(windows):
            offsets[row, : len(w.ids)] = torch.from_numpy(w.offsets)
        return {
            "inputs": inputs,
            "valid": valid,
            "segments": segments,
            "starts": torch.tensor([w.start for _, w in windows], dtype=torch.long),
            "ends": torch.tensor([w.end for _, w in windows], dtype=torch.long),
            "offsets": offsets,
            "window_of": torch.tensor([k for k, _ in windows], dtype=torch.long),
            "contexts": [q.context for q in picked],
            "answers": [q.answers for q in picked],
        }

    def example(self, i):
        q = self.questions[i]
        return {"question": q.question, "answers": q.answers, "context": q.context[:200], "windows": len(q.windows)}

    @property
    def windows(self) -> int:
        return sum(len(q.windows) for q in self.questions)
