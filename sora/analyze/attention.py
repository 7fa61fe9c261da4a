"""What each head attends to: entropy, distance, special tokens, itself, the previous token.

Statistics are averages over real query positions of the analysis batches, each query's pattern
restricted to the keys its mask allowed:

- ``entropy`` (nats) and ``norm_entropy`` (entropy / log(allowed keys): 1 is uniform attention),
- ``distance``: expected |query - key| in positions (self-attention only),
- ``special``: mass on special tokens ([CLS], [SEP], BOS, EOS ... from the tokenizer; the CLS
  patch of image and audio models; the first position of a causal stack, the usual "attention
  sink" of decoders),
- ``self`` and ``prev``: mass on the query's own position and the one before it,
- ``offset`` / ``offset_mass``: the relative position (key - query, within +-4) that gets the most mass.

A head-type label summarises them (first rule that holds): **special-token sink**
(special >= 0.5), **previous-token** (prev >= 0.5), **positional** (one fixed offset >= 0.5, e.g.
itself or the next token), **broad** (norm_entropy >= 0.75), otherwise **mixed**.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sora.analyze.tracing import run_with_cache, stack_of, stack_prefix, token_ids, token_valid
from sora.models.names import attention_modules

WINDOW = 4  # offsets -WINDOW..WINDOW are profiled
SINK, PREVIOUS, POSITIONAL, BROAD, MIXED = "special-token sink", "previous-token", "positional", "broad", "mixed"
HEAD_TYPES = (SINK, PREVIOUS, POSITIONAL, BROAD, MIXED)
SPECIAL_TOKENS = (
    "[CLS]",
    "[SEP]",
    "[BOS]",
    "[EOS]",
    "<s>",
    "</s>",
    "<bos>",
    "<eos>",
    "<|endoftext|>",
    "<cls>",
    "<sep>",
)


def special_token_ids(model: nn.Module, tokenizer=None, extra: list[str] | None = None) -> set[int]:
    """Ids of the special tokens a tokenizer knows, plus the model's bos/eos ids."""
    ids = {i for i in (model.config.bos_id, model.config.eos_id) if i is not None}
    if tokenizer is not None:
        for token in (*SPECIAL_TOKENS, *(extra or [])):
            i = tokenizer.token_to_id(token)
            if i is not None:
                ids.add(i)
    return ids


def attention_statistics(
    model: nn.Module, batches: list[dict[str, Tensor]], task: str, special_ids: set[int] | None = None
) -> dict[str, dict]:
    """Statistics and a type label for every head, by head name."""
    attns = [(p, a) for p, a in attention_modules(model) if a.n_heads > 0]
    acc = {p: _Accumulator(a.n_heads) for p, a in attns}
    special_ids = special_ids or set()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            _, cache = run_with_cache(model, batch, task, [f"{p}.hook_pattern" for p, _ in attns])
            valids, ids = token_valid(model, batch, task), token_ids(batch, task)
            for p, attn in attns:
                prefix = stack_prefix(model, p)
                key_prefix = "encoder." if attn.cross else prefix
                pattern = cache[f"{p}.hook_pattern"].float()  # (B, H, T, S)
                B, _, T, S = pattern.shape
                q_valid = _or_all(valids.get(prefix), B, T)
                k_valid = _key_valid(model, task, valids, key_prefix, B, S)
                causal = bool(getattr(stack_of(model, prefix), "causal", False)) and not attn.cross
                allowed = k_valid[:, None, :].expand(B, T, S)  # (B, T, S)
                if causal:
                    allowed = allowed & torch.ones(T, S, dtype=torch.bool, device=pattern.device).tril()
                special = _special_keys(model, ids.get(key_prefix), special_ids, B, S, causal, pattern.device)
                acc[p].add(pattern, q_valid, allowed, special, self_attention=not attn.cross)
    model.train(was_training)
    out = {}
    for p, attn in attns:
        for h, stats in enumerate(acc[p].result()):
            stats["type"] = head_type(stats)
            stats["cross"] = attn.cross
            out[f"{p}.head.{h}"] = stats
    return out


def head_type(stats: dict) -> str:
    if stats.get("special") is not None and stats["special"] >= 0.5:
        return SINK
    if stats.get("prev") is not None and stats["prev"] >= 0.5:
        return PREVIOUS
    if stats.get("offset_mass") is not None and stats["offset_mass"] >= 0.5:
        return POSITIONAL
    if stats["norm_entropy"] is not None and stats["norm_entropy"] >= 0.75:
        return BROAD
    return MIXED


def _or_all(valid: Tensor | None, B: int, T: int) -> Tensor:
    return valid.bool() if valid is not None else torch.ones(B, T, dtype=torch.bool)


def _key_valid(model, task, valids, key_prefix, B, S) -> Tensor:
    """Keys the forward pass let queries see (an LM runs without a padding mask)."""
    if task == "lm":
        return torch.ones(B, S, dtype=torch.bool)
    return _or_all(valids.get(key_prefix), B, S)


def _special_keys(model, ids, special_ids, B, S, causal, device) -> Tensor | None:
    special = torch.zeros(B, S, dtype=torch.bool, device=device)
    found = False
    if ids is not None and special_ids:
        special |= torch.isin(ids, torch.tensor(sorted(special_ids), device=ids.device))
        found = True
    patches = getattr(getattr(model, "embed", None), "patches", None)
    if (patches is not None and patches.cls is not None) or causal:
        special[:, 0] = True  # the CLS patch, or the first position of a causal stack
        found = True
    return special if found else None


class _Accumulator:
    """Sums of per-query statistics for each head of one attention module."""

    def __init__(self, n_heads: int):
        self.n_heads = n_heads
        z = lambda: torch.zeros(n_heads, dtype=torch.float64)  # noqa: E731
        self.entropy, self.norm_entropy, self.distance, self.special = z(), z(), z(), z()
        self.offsets = torch.zeros(2 * WINDOW + 1, n_heads, dtype=torch.float64)
        self.queries = self.norm_queries = self.special_queries = 0.0
        self.self_attention, self.has_special = True, False

    def add(self, p: Tensor, q_valid: Tensor, allowed: Tensor, special: Tensor | None, *, self_attention: bool):
        B, H, T, S = p.shape
        w = q_valid.to(p.dtype)  # (B, T)
        n_queries = w.sum().item()
        if n_queries == 0:
            return
        self.self_attention = self_attention
        p = p * allowed[:, None].to(p.dtype)  # masked keys hold ~0 already; make it exact
        ent = -(p * p.clamp_min(1e-12).log()).sum(-1)  # (B, H, T)
        self.entropy += (ent * w[:, None]).sum((0, 2)).double()
        n_allowed = allowed.sum(-1).to(p.dtype)  # (B, T)
        wn = w * (n_allowed > 1)
        norm = ent / n_allowed.clamp_min(2).log()[:, None]
        self.norm_entropy += (norm * wn[:, None]).sum((0, 2)).double()
        self.norm_queries += wn.sum().item()
        self.queries += n_queries
        if self_attention:
            q_pos = torch.arange(T, device=p.device, dtype=p.dtype)[:, None]
            k_pos = torch.arange(S, device=p.device, dtype=p.dtype)[None, :]
            dist = (p * (q_pos - k_pos).abs()).sum(-1)  # (B, H, T)
            self.distance += (dist * w[:, None]).sum((0, 2)).double()
            for i, o in enumerate(range(-WINDOW, WINDOW + 1)):
                diag = p.diagonal(offset=o, dim1=-2, dim2=-1)  # (B, H, L): entries (t, t + o)
                start = max(0, -o)
                q = w[:, start : start + diag.shape[-1]]
                self.offsets[i] += (diag * q[:, None]).sum((0, 2)).double()
        if special is not None:
            self.has_special = True
            mass = (p * special[:, None, None, :].to(p.dtype)).sum(-1)  # (B, H, T)
            self.special += (mass * w[:, None]).sum((0, 2)).double()

    def result(self) -> list[dict]:
        n = max(self.queries, 1.0)
        rows = []
        for h in range(self.n_heads):
            row = {
                "entropy": float(self.entropy[h] / n),
                "norm_entropy": float(self.norm_entropy[h] / self.norm_queries) if self.norm_queries else None,
                "special": float(self.special[h] / n) if self.has_special else None,
                "distance": None,
                "self": None,
                "prev": None,
                "offset": None,
                "offset_mass": None,
            }
            if self.self_attention:
                profile = self.offsets[:, h] / n
                best = int(profile.argmax())
                row.update(
                    distance=float(self.distance[h] / n),
                    self=float(profile[WINDOW]),
                    prev=float(profile[WINDOW - 1]),
                    offset=best - WINDOW,
                    offset_mass=float(profile[best]),
                )
            rows.append(row)
        return rows
