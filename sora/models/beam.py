"""Beam search with a KV cache reordered as beams survive, for the seq2seq decoder and decoder LMs.

Scores are summed log-probabilities; a finished hypothesis is ranked by score / length**alpha
(``length_penalty``) so that short outputs are not favoured. A source is done when it has
``beam`` finished hypotheses. The search only asks a *step* for next-token logits and tells it
which rows survive; the two model kinds differ only in their step (what they feed, what they cache).
"""

import torch
from torch import Tensor


class Seq2SeqStep:
    """The seq2seq decoder, one token a step, attending to the (beam-repeated) source."""

    def __init__(self, model, memory: Tensor, memory_valid: Tensor | None, capacity: int, use_cache: bool = True):
        self.model, self.memory, self.memory_valid = model, memory, memory_valid
        self.cache = model.decoder.new_cache(capacity) if use_cache else None

    def __call__(self, tokens: Tensor) -> Tensor:  # (N, T) -> (N, V)
        fed = tokens[:, -1:] if self.cache is not None else tokens  # without a cache: everything again
        return self.model.decode(fed, self.memory, self.memory_valid, self.cache)[:, -1]

    def reorder(self, rows: Tensor) -> None:
        for layer in self.cache or ():
            layer.reorder(rows)


class LMStep:
    """A decoder LM: the prompt first, then one token a step; past ``max_len`` the cache restarts on
    the last ``max_len - 1`` tokens, as ``DecoderLM.generate`` slides its window."""

    def __init__(self, model, capacity: int, use_cache: bool = True):
        self.model, self.cache, self.length, self.use_cache = model, None, 0, use_cache
        self.capacity = min(capacity, model.config.max_len)
        self.step = model.decode_step() if use_cache else None  # one token a step without module calls

    def __call__(self, tokens: Tensor) -> Tensor:  # (N, T) -> (N, V)
        max_len = self.model.config.max_len
        if not self.use_cache:  # everything in the window again
            return self.model.next_logits(tokens[:, -max_len:])
        if self.length == 0 or self.length == max_len:  # the prompt, or a full window: (re)start the cache
            keep = max_len if self.length == 0 else max(max_len - 1, 1)
            capacity = self.capacity if self.length == 0 else max_len
            self.cache, fed = self.model.new_cache(capacity), tokens[:, -keep:]
            self.length = fed.shape[1]
        else:
            fed = tokens[:, -1:]
            self.length += 1
        return self.model.next_logits(fed, self.cache, self.step)

    def reorder(self, rows: Tensor) -> None:
        for layer in self.cache or ():
            layer.reorder(rows)


def beam_search(
    model,
    memory: Tensor,
    memory_valid: Tensor | None,
    *,
    beam: int,
    max_new_tokens: int,
    bos_id: int,
    eos_id: int,
    length_penalty: float = 1.0,
    use_cache: bool = True,
) -> list[list[int]]:
    """seq2seq: the best target for each source (without bos and eos)."""
    memory = memory.repeat_interleave(beam, dim=0)  # (B*beam, S, d)
    if memory_valid is not None:
        memory_valid = memory_valid.repeat_interleave(beam, dim=0)
    start = torch.full((memory.shape[0] // beam, 1), bos_id, dtype=torch.long, device=memory.device)
    return search(
        Seq2SeqStep(model, memory, memory_valid, 1 + max_new_tokens, use_cache),
        start,
        beam=beam,
        max_new_tokens=max_new_tokens,
        eos_id=eos_id,
        length_penalty=length_penalty,
    )


@torch.inference_mode()
def lm_beam_search(
    model,
    ids: Tensor,
    *,
    beam: int,
    max_new_tokens: int,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
    use_cache: bool = True,
) -> list[list[int]]:
    """Decoder LM: the best continuation of each prompt in ``ids`` (B, T), without the prompt and eos."""
    was_training = model.training
    model.eval()
    try:
        return search(
            LMStep(model, ids.shape[1] + max_new_tokens, use_cache),
            ids,
            beam=beam,
            max_new_tokens=max_new_tokens,
            eos_id=model.config.eos_id if eos_id is None else eos_id,
            length_penalty=length_penalty,
        )
    finally:
        model.train(was_training)


def search(
    step, start: Tensor, *, beam: int, max_new_tokens: int, eos_id: int | None, length_penalty: float = 1.0
) -> list[list[int]]:
    """The best continuation of each row of ``start`` (B, T0); ``step`` gives logits and keeps rows."""
    B, T0 = start.shape
    device = start.device
    filler = eos_id if eos_id is not None else 0  # the token of a dead beam (its score is -inf)
    tokens = start.repeat_interleave(beam, dim=0)  # (B*beam, T0)
    scores = torch.zeros(B, beam, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive at first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]

    for _ in range(max_new_tokens):
        logp = step(tokens).log_softmax(-1)  # (B*beam, V)
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
                    hyp = tokens[row, T0:].tolist()
                    finished[b].append((score / max(len(hyp) + 1, 1) ** length_penalty, hyp))
                    continue
                next_rows.append(row), next_tokens.append(token), next_scores.append(score)
                kept += 1
                if kept == beam:
                    break
            while kept < beam:  # this source is done: pad with dead beams
                next_rows.append(b * beam), next_tokens.append(filler), next_scores.append(float("-inf"))
                kept += 1
        if all(len(f) >= beam for f in finished):
            break
        rows = torch.tensor(next_rows, device=device)
        step.reorder(rows)
        tokens = torch.cat([tokens[rows], torch.tensor(next_tokens, device=device)[:, None]], dim=1)
        scores = torch.tensor(next_scores, device=device).view(B, beam)

    results = []
    for b in range(B):
        if not finished[b]:  # ran out of steps: rank the live beams
            for i in range(beam):
                s = scores[b, i].item()
                if s > float("-inf"):
                    hyp = tokens[b * beam + i, T0:].tolist()
                    finished[b].append((s / max(len(hyp), 1) ** length_penalty, hyp))
        results.append(max(finished[b], key=lambda item: item[0])[1] if finished[b] else [])
    return results
