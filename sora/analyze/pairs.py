"""Which heads carry the question into the paragraph: attention from question tokens to context tokens.

For text pairs (a question answering model, or any model read with segment ids), every head's share of
attention that the question's tokens (segment 0, without [CLS] and the separator) put on the paragraph's
tokens (segment 1, without the final separator), for one example (the first window of the first batch)
and averaged over every window of the analysis batches. A head near 1 reads the paragraph from the
question; one near 0 keeps the question to itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sora.analyze.tracing import run_with_cache
from sora.models.names import attention_modules


def question_to_context(model: nn.Module, batches: list[dict[str, Tensor]], task: str, tokenizer=None) -> dict | None:
    """{"example": {...}, "heads": {name: {"example": mass, "mean": mass}}, "layers": [...], "matrix": (L, H)};
    None when the batches carry no segment ids."""
    batches = [b for b in batches if "segments" in b]
    attns = [(p, a) for p, a in attention_modules(model) if a.n_heads > 0 and not a.cross]
    if not batches or not attns:
        return None
    sums = {p: torch.zeros(a.n_heads, dtype=torch.float64) for p, a in attns}
    first: dict[str, Tensor] = {}
    windows = 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            _, cache = run_with_cache(model, batch, task, [f"{p}.hook_pattern" for p, _ in attns])
            question, context = pair_masks(batch)  # (B, T) each
            n_q = question.sum(1).clamp_min(1).double()  # (B,)
            for p, _ in attns:
                pattern = cache[f"{p}.hook_pattern"].double()  # (B, H, T, S)
                onto = (pattern * context[:, None, None, :]).sum(-1)  # (B, H, T): mass on the paragraph
                mass = (onto * question[:, None, :]).sum(-1) / n_q[:, None]  # (B, H)
                sums[p] += mass.sum(0).cpu()
                first.setdefault(p, mass[0].cpu())
            windows += int(batch["inputs"].shape[0])
    model.train(was_training)
    heads = {
        f"{p}.head.{h}": {"example": round(float(first[p][h]), 4), "mean": round(float(sums[p][h] / windows), 4)}
        for p, a in attns
        for h in range(a.n_heads)
    }
    return {
        "example": _describe_example(batches[0], tokenizer),
        "windows": windows,
        "heads": heads,
        "layers": [p for p, _ in attns],
        "matrix": [first[p].tolist() for p, _ in attns],
    }


def pair_masks(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(question, context) float masks (B, T): segment 0 without its first and last token ([CLS], [SEP]), and
    segment 1 without its last token ([SEP])."""
    valid = batch.get("valid", torch.ones_like(batch["inputs"], dtype=torch.bool))
    segments = batch["segments"]
    first = (segments == 0) & valid
    second = (segments == 1) & valid
    positions = torch.arange(segments.shape[1], device=segments.device)[None, :]
    last_first = (first * positions).max(1, keepdim=True).values  # the separator ending segment 0
    last_second = (second * positions).max(1, keepdim=True).values
    question = first & (positions > 0) & (positions < last_first)
    context = second & (positions < last_second)
    return question.double(), context.double()


def _describe_example(batch: dict[str, Tensor], tokenizer) -> dict:
    question, context = pair_masks(batch)
    out = {"question_tokens": int(question[0].sum()), "context_tokens": int(context[0].sum())}
    if tokenizer is not None:
        ids = batch["inputs"][0][question[0].bool()].tolist()
        out["question"] = tokenizer.decode(ids)
    return out
