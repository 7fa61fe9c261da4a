"""The span task: best valid spans from hand-made logits, answers over windows, SQuAD v1.1 exact match and F1."""

from __future__ import annotations

import pytest
import torch

from sora.models import ModelConfig, build_model
from sora.tasks import evaluate, make_task
from sora.tasks.spans import answers, best_spans
from sora.tasks.squad import best_over_references, exact_match, f1, normalize_answer

NEG = -10.0


def logits_of(starts: list[float], ends: list[float]) -> torch.Tensor:  # one window -> (1, T, 2)
    return torch.tensor([list(zip(starts, ends))])


def test_the_best_span_ends_at_or_after_its_start():
    # the best start (3) comes after the best end (1): the valid best is start 3 with the best end from 3 on
    logits = logits_of([0, 0, 0, 5, 0, 0], [0, 6, 0, 0, 2, 0])
    score, first, last = best_spans(logits, torch.ones(1, 6, dtype=torch.bool))
    assert (int(first), int(last)) == (3, 4) and float(score) == 7


def test_the_best_span_is_bounded_in_length_and_inside_the_context():
    logits = logits_of([5, 0, 4, 0, 0, 0], [0, 0, 0, 0, 0, 6])
    allowed = torch.tensor([[False, True, True, True, True, True]])  # position 0 is [CLS]
    _, first, last = best_spans(logits, allowed, max_answer=10)
    assert (int(first), int(last)) == (2, 5)
    _, first, last = best_spans(logits, allowed, max_answer=3)  # 2..5 is four tokens long: too long
    assert int(last) - int(first) < 3 and (int(first), int(last)) == (3, 5)


def test_a_window_without_context_has_no_valid_span():
    score, _, _ = best_spans(logits_of([1, 2], [3, 4]), torch.zeros(1, 2, dtype=torch.bool))
    assert float(score) == float("-inf")


def test_a_question_takes_the_best_span_over_its_windows_and_its_characters():
    context = "Paris is the capital of France."
    # two windows of question 0 with offsets into the context (-1: question and specials)
    offsets = torch.full((2, 4, 2), -1)
    offsets[0, 1:] = torch.tensor([[0, 5], [6, 8], [9, 12]])  # Paris is the
    offsets[1, 1:] = torch.tensor([[13, 20], [21, 23], [24, 30]])  # capital of France
    logits = torch.full((2, 4, 2), NEG)
    logits[0, 1] = torch.tensor([2.0, 2.0])  # window 0: "Paris", score 4
    logits[1, 3] = torch.tensor([3.0, 3.0])  # window 1: "France", score 6
    (answer,) = answers(logits, offsets, torch.tensor([0, 0]), [context])
    assert (answer.text, answer.start, answer.end, answer.score) == ("France", 24, 30, 6.0)


@pytest.mark.parametrize(
    "text, normal",
    [("The Cat!", "cat"), ("  an   apple,  a pear ", "apple pear"), ("Theatre", "theatre"), ("U.S.A.", "usa")],
)
def test_the_official_normalisation(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_and_f1_on_known_cases():
    assert exact_match("the Eiffel Tower", "Eiffel tower.") == 1.0
    assert f1("Eiffel", "the Eiffel Tower") == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 1/2
    assert f1("in the year 1889", "1889") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert f1("Paris", "London") == 0.0 and f1("the", "a") == 0.0  # nothing left after normalising
    assert best_over_references("Denver Broncos", ["Broncos", "Denver Broncos", "the Broncos"]) == (1.0, 1.0)


def tiny_span_model() -> torch.nn.Module:
    config = ModelConfig(
        arch="span_extractor",
        vocab_size=20,
        d_model=16,
        encoder={"n_layers": 1, "n_heads": 2, "d_ff": 32},
        segments=2,
        max_len=16,
        dropout=0.0,
    )
    torch.manual_seed(0)
    return build_model(config).eval()


def span_batch() -> dict:
    inputs = torch.tensor([[4, 5, 6, 3, 7, 8, 9, 3], [4, 5, 3, 10, 11, 3, 0, 0]])
    valid = inputs != 0
    segments = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 0, 0]])
    offsets = torch.full((2, 8, 2), -1)
    offsets[0, 4:7] = torch.tensor([[0, 3], [4, 7], [8, 11]])
    offsets[1, 3:5] = torch.tensor([[0, 2], [3, 5]])
    return {
        "inputs": inputs, "valid": valid, "segments": segments,
        "starts": torch.tensor([5, 3]), "ends": torch.tensor([6, 3]),
        "offsets": offsets, "window_of": torch.tensor([0, 1]),
        "contexts": ["one two six", "ab cd"], "answers": [["two six"], ["ab"]],
    }  # fmt: skip


def test_the_span_task_trains_and_reports_exact_match_and_f1():
    model, task, batch = tiny_span_model(), make_task("qa" if False else "span"), span_batch()
    before = evaluate(model, [batch], task)
    assert set(before) == {"loss", "exact_match", "f1"} and 0 <= before["f1"] <= 100
    optim = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(60):
        optim.zero_grad()
        (task.loss(model, batch) / task.targets(batch)).backward()
        optim.step()
    after = evaluate(model, [batch], task)
    assert after["loss"] < before["loss"] / 4 and after["exact_match"] == after["f1"] == 100.0
    score = task.score(model.eval(), batch)
    assert score.losses.shape == (2,) and score.total == 2 and score.hits == pytest.approx(2.0)
