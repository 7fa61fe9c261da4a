import torch

from sora.analyze import attention_statistics
from sora.analyze.attention import _Accumulator, head_type
from sora.analyze.position import position_analysis
from tests.analyze.batches import batch_for, model_for


def _stats(pattern, special=None):
    B, H, T, S = pattern.shape
    acc = _Accumulator(H)
    allowed = torch.ones(B, T, S, dtype=torch.bool)
    acc.add(pattern, torch.ones(B, T, dtype=torch.bool), allowed, special, self_attention=True)
    rows = acc.result()
    for row in rows:
        row["type"] = head_type(row)
    return rows


def test_hand_made_patterns_get_the_right_statistics_and_types():
    T = 6
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(0, T - 1)] = 1  # each token looks at the one before
    sink = torch.zeros(T, T)
    sink[:, 0] = 1  # everything on [CLS]
    uniform = torch.full((T, T), 1 / T)
    nxt = torch.zeros(T, T)
    nxt[torch.arange(T - 1), torch.arange(1, T)] = 1
    nxt[T - 1, T - 1] = 1
    pattern = torch.stack([prev, sink, uniform, nxt])[None]  # (1, 4, T, T)
    special = torch.zeros(1, T, dtype=torch.bool)
    special[0, 0] = True
    rows = _stats(pattern, special)
    assert [r["type"] for r in rows] == ["previous-token", "special-token sink", "broad", "positional"]
    assert rows[0]["prev"] == 5 / 6 and rows[0]["distance"] == 5 / 6
    assert rows[1]["special"] == 1.0 and abs(rows[1]["entropy"]) < 1e-6
    assert abs(rows[2]["norm_entropy"] - 1.0) < 1e-6 and rows[3]["offset"] == 1


def test_statistics_for_every_head_of_a_seq2seq_model():
    model, task = model_for("seq2seq")
    stats = attention_statistics(model, [batch_for("seq2seq")], task, special_ids={1})
    assert len(stats) == 4 * 2 + 4 * 2 + 2 * 2  # encoder self, decoder self, decoder cross
    cross = stats["decoder.layers.1.cross_attn.head.0"]
    assert cross["cross"] and cross["distance"] is None and cross["special"] is not None
    for row in stats.values():
        assert 0 <= row["norm_entropy"] <= 1 + 1e-6 and row["type"]


def test_position_similarity():
    model, _ = model_for("text_classifier")
    out = position_analysis(model, limit=16)
    sim = out["embed.position"]["matrix"]
    assert sim.shape == (16, 16) and torch.allclose(sim.diagonal(), torch.ones(16))
    assert out["embed.position"]["similarity_by_distance"][0] == 1.0
