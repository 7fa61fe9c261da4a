"""Text pairs: encoded exactly as transformers encodes them (ids and segment ids), in batches with segment ids,
and windows over long contexts whose answers map back to the characters of the original text."""

from __future__ import annotations

import csv
import os

import pytest
import torch

from sora.data import DataConfig, prepare_data
from sora.data.pairs import encode_pairs
from sora.data.tokenizer import configure_for_task, load_tokenizer_file
from sora.data.windows import windows

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PAIRS = [
    ("Is the film good?", "The film is good. Never dull, the performances carry the slow middle hour."),
    ("A dull plot", "A dull, slow plot!"),
    ("never", "The performances carry through the middle hour, utterly forgettable."),
]


@pytest.fixture(scope="module")
def bert_tokenizers(tmp_path_factory):
    """(transformers' BertTokenizerFast, the same tokenizer.json as a Sora data config reads it)."""
    transformers = pytest.importorskip("transformers")
    from tests.interop.hf_models import VOCAB

    folder = tmp_path_factory.mktemp("bert-tok")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    hf = transformers.BertTokenizerFast(str(folder / "vocab.txt"))
    hf.backend_tokenizer.save(str(folder / "tokenizer.json"))
    return hf, folder / "tokenizer.json"


def test_pairs_encode_as_transformers_does(bert_tokenizers):
    hf, path = bert_tokenizers
    tok = configure_for_task(load_tokenizer_file(path), "classification", 64, pretrained=True)
    ids, segments = encode_pairs(tok, [a for a, _ in PAIRS], [b for _, b in PAIRS])
    for (a, b), our_ids, our_segments in zip(PAIRS, ids, segments):
        theirs = hf(a, b)
        assert our_ids.tolist() == theirs["input_ids"] and our_segments.tolist() == theirs["token_type_ids"]


def test_a_data_config_with_two_text_columns_gives_batches_with_segment_ids(bert_tokenizers, tmp_path):
    hf, path = bert_tokenizers
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["premise", "hypothesis", "label"])
        for i in range(30):
            a, b = PAIRS[i % 3]
            w.writerow([a, f"{b} {i}", "yes" if i % 2 else "no"])
    cfg = DataConfig(
        source=str(tmp_path / "pairs.csv"),
        columns={"text": "premise", "text_pair": "hypothesis"},
        tokenizer={"kind": "pretrained", "path": str(path)},
        duplicates="keep",
        split={"validation": 0.2, "test": 0.2, "stratify": False},
    )
    data = prepare_data(cfg)
    assert data.model_fields()["segments"] == 2
    batch = next(iter(data.loader("train", 4)))
    assert batch["segments"].shape == batch["inputs"].shape
    examples = data.splits["train"]
    for row in range(len(batch["inputs"])):
        n = int(batch["valid"][row].sum())
        matches = [i for i, ids in enumerate(examples.ids) if ids.tolist() == batch["inputs"][row, :n].tolist()]
        text = examples.texts[matches[0]]
        pair = next(b for a, b in PAIRS if a == text)
        number = hf.decode(batch["inputs"][row, :n].tolist()).split()[-2]  # the row's number, before [SEP]
        theirs = hf(text, f"{pair} {number}")
        assert batch["segments"][row, :n].tolist() == theirs["token_type_ids"]


def test_a_tokenizer_trained_here_separates_a_pair_with_its_end_token(tmp_path):
    from sora.data import NormalizeConfig, TokenizerConfig
    from sora.data.tokenizer import train_tokenizer

    texts = [a for a, _ in PAIRS] + [b for _, b in PAIRS]
    tok = train_tokenizer(texts, TokenizerConfig(kind="wordpiece", vocab_size=200, min_frequency=1), NormalizeConfig())
    tok = configure_for_task(tok, "classification", 64)
    enc = tok.encode("film good", "dull plot")
    tokens = enc.tokens
    assert tokens[0] == "[CLS]" and tokens.count("[EOS]") == 2 and tokens[-1] == "[EOS]"
    sep = tokens.index("[EOS]")
    assert enc.type_ids == [0] * (sep + 1) + [1] * (len(tokens) - sep - 1)


def test_windows_over_a_long_context_return_the_answers_characters(bert_tokenizers):
    _, path = bert_tokenizers
    tok = configure_for_task(load_tokenizer_file(path), "span", 24, pretrained=True)
    context = " ".join(["the film is good ."] * 8 + ["a dull , slow plot !"] + ["never dull ."] * 6)
    first = context.index("a dull , slow plot")
    answer = (first, first + len("a dull , slow plot"))
    cut = windows(tok, "is the plot slow ?", context, max_len=24, stride=6, answer=answer)
    assert len(cut) > 2 and all(len(w.ids) <= 24 for w in cut)
    holding = [w for w in cut if w.start > 0]
    assert holding, "some window holds the whole answer"
    for w in holding:
        assert context[w.offsets[w.start, 0] : w.offsets[w.end, 1]] == "a dull , slow plot"
        assert w.segments[w.start] == 1 and w.context_tokens[w.start : w.end + 1].all()
    covered = sorted({int(c) for w in cut for c in w.offsets[w.context_tokens][:, 0]})
    assert covered[0] == 0 and covered[-1] == context.rindex("never dull .") + len("never dull ")  # every word read
    assert tok.truncation["max_length"] == 24 and tok.truncation["stride"] == 0  # the tokenizer is left as it was
    assert torch.tensor(cut[0].segments).tolist()[0] == 0
