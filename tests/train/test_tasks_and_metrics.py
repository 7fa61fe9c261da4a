"""Losses and metrics per task: the numbers analysis and compression will also rely on."""

import math

import pytest
import torch
from sacrebleu.metrics import BLEU

from sora.errors import SoraError
from sora.models import build_model
from sora.tasks import greedy_ctc
from sora.tasks import metrics as M
from sora.train import evaluate, make_task
from tests.helpers import tiny
from tests.train.synthetic import SyntheticData


def test_classification_metrics_from_a_confusion_matrix():
    confusion = torch.tensor([[8, 2], [1, 9]])  # rows: truth, columns: predicted
    m = M.classification_metrics(confusion, ["ham", "spam"])
    assert m["accuracy"] == pytest.approx(17 / 20)
    f1_spam = 2 * (9 / 11) * (9 / 10) / (9 / 11 + 9 / 10)
    f1_ham = 2 * (8 / 9) * (8 / 10) / (8 / 9 + 8 / 10)
    assert m["f1_spam"] == pytest.approx(f1_spam) and m["f1_ham"] == pytest.approx(f1_ham)
    assert m["macro_f1"] == pytest.approx((f1_spam + f1_ham) / 2)


def test_lm_metrics_convert_nats_to_bits_per_char():
    m = M.lm_metrics(nats=2 * math.log(2) * 100, tokens=100, chars=200)
    assert m["loss"] == pytest.approx(2 * math.log(2)) and m["perplexity"] == pytest.approx(4.0)
    assert m["bits_per_token"] == pytest.approx(2.0) and m["bits_per_char"] == pytest.approx(1.0)


def test_edit_distance_and_error_rates():
    assert M.edit_distance(list("kitten"), list("sitting")) == 3
    stats = M.error_rate_stats(["one two tree"], ["one two three"])
    rates = M.error_rates(stats)
    assert rates["cer"] == pytest.approx(1 / 13) and rates["wer"] == pytest.approx(1 / 3)


def test_bleu_from_summed_statistics_equals_sacrebleu_on_the_whole_corpus():
    hyps = ["the cat sat on the mat", "a dog ran in the park today", "hello there"]
    refs = ["the cat sat on a mat", "the dog ran in the park today", "hello there friend"]
    split = M.bleu_stats(hyps[:2], refs[:2]) + M.bleu_stats(hyps[2:], refs[2:])  # two shards
    assert M.bleu_from_stats(split) == pytest.approx(BLEU().corpus_score(hyps, [refs]).score)


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    frames = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0]])  # best class per frame
    log_probs = torch.nn.functional.one_hot(frames, 3).float().log_softmax(-1)
    assert greedy_ctc(log_probs, torch.tensor([8])) == [[1, 1, 2]]
    assert greedy_ctc(log_probs, torch.tensor([4])) == [[1, 1]]


@pytest.mark.parametrize(
    "task,arch,extra",
    [
        ("classification", "encoder_classifier", {}),
        ("lm", "decoder_lm", {}),
        ("seq2seq", "seq2seq", {}),
        ("ctc", "token_classifier", {"input": "audio", "audio": {"n_mels": 8, "patch_frames": 4}}),
    ],
)
def test_evaluate_every_task_and_loss_is_a_sum_over_targets(task, arch, extra):
    data = SyntheticData(task, n=16, n_val=16, n_test=0)
    model = build_model(tiny(arch, **extra)).eval()
    t = make_task(task, labels=data.labels)
    metrics = evaluate(model, data.loader("validation", 8), t, decode_examples=4)
    expected = {
        "classification": {"accuracy", "macro_f1", "loss"},
        "lm": {"loss", "perplexity", "bits_per_token"},
        "seq2seq": {"loss", "perplexity", "bleu"},
        "ctc": {"loss", "cer", "wer"},
    }[task]
    assert expected <= set(metrics) and all(math.isfinite(v) for v in metrics.values())
    # the summed loss over both halves divided by all targets equals the evaluated mean loss
    batches = list(data.loader("validation", 8))
    with torch.no_grad():
        total = sum(float(t.loss(model, b)) for b in batches)
    count = sum(t.targets(b) for b in batches)
    assert total / count == pytest.approx(metrics["loss"], rel=1e-5)


def test_evaluate_with_no_batches_is_a_clear_error():
    model = build_model(tiny())
    with pytest.raises(SoraError, match="no batches"):
        evaluate(model, [], "classification")


def test_unknown_task_is_named():
    with pytest.raises(SoraError, match="unknown task 'regression'"):
        make_task("regression")
