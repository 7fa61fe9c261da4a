"""Beam search for the seq2seq decoder, with a KV cache reordered as beams survive.

Scores are summed log-probabilities; a finished hypothesis is ranked by score / length**alpha
(``length_penalty``) so that short outputs are not favoured. A source is done when it has
``beam`` finished hypotheses.
"""

import torch
from torch import Tensor


def beam_search(model, memory: Tensor, memory_valid: Tensor | None, *, beam: int, max_new_tokens: int,
                bos_id: int, eos_id: int, length_penalty: float = 1.0) -> list[list[int]]:
    B, device = memory.shape[0], memory.device
    memory = memory.repeat_interleave(beam, dim=0)  # (B*beam, S, d)
    if memory_valid is not None:
        memory_valid = memory_valid.repeat_interleave(beam, dim=0)
    tokens = torch.full((B * beam, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(B, beam, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive at first
    cache = model.decoder.new_cache()
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]

    for step in range(max_new_tokens):
        logp = model.decode(tokens[:, -1:], memory, memory_valid, cache)[:, -1].log_softmax(-1)  # (B*beam, V)
        V = logp.shape[-1]
        candidates = (scores.view(-1, 1) + logp).view(B, beam * V)
        top_scores, top_index = candidates.topk(2 * beam, dim=-1)  # (B, 2*beam)
        next_rows, next_tokens, next_scores = [], [], []
        for b in range(B):
            kept = 0
            for score, index in zip(top_scores[b].tolist(), top_index[b].tolist()):
                row, token = b * beam + index // V, index % V
                if len(finished[b]) >= beam or score == float("-inf"):
                    break
                if token == eos_id:
                    hyp = tokens[row, 1:].tolist()
                    finished[b].append((score / max(len(hyp) + 1, 1) ** length_penalty, hyp))
                    continue
                next_rows.append(row), next_tokens.append(token), next_scores.append(score)
                kept += 1
                if kept == beam:
                    break
            while kept < beam:  # this source is done: pad with dead beams
                next_rows.append(b * beam), next_tokens.append(eos_id), next_scores.append(float("-inf"))
                kept += 1
        if all(len(f) >= beam for f in finished):
            break
        rows = torch.tensor(next_rows, device=device)
        for layer in cache:
            layer.reorder(rows)
        tokens = torch.cat([tokens[rows], torch.tensor(next_tokens, device=device)[:, None]], dim=1)
        scores = torch.tensor(next_scores, device=device).view(B, beam)

    results = []
    for b in range(B):
        if not finished[b]:  # ran out of steps: rank the live beams
            for i in range(beam):
                s = scores[b, i].item()
                if s > float("-inf"):
                    hyp = tokens[b * beam + i, 1:].tolist()
                    finished[b].append((s / max(len(hyp), 1) ** length_penalty, hyp))
        results.append(max(finished[b], key=lambda item: item[0])[1] if finished[b] else [])
    return results
