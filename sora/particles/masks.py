"""Attention masks as additive float tensors.

A large negative number (not -inf) marks keys a query may not see: a query whose every key is
masked (a padding query under a causal mask) then gets a uniform pattern instead of NaN, and
real positions are unaffected.
"""

import torch
from torch import Tensor


def attention_mask(
    key_valid: Tensor | None,
    *,
    q_len: int,
    k_len: int,
    causal: bool,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> Tensor | None:
    """Additive mask (B or 1, 1, T, S): 0 where a query may attend, a large negative elsewhere.

    ``key_valid`` (B, S) is True for real tokens. Under ``causal`` the last query is aligned with
    the last key, so incremental decoding (T=1, S=cache+1) sees every earlier key.
    """
    if key_valid is None and not causal:
        return None
    device = device or (key_valid.device if key_valid is not None else None)
    allowed = torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=device)
    if causal:
        q_pos = torch.arange(k_len - q_len, k_len, device=device).unsqueeze(1)  # (T, 1)
        allowed = allowed & (torch.arange(k_len, device=device) <= q_pos)  # (1, 1, T, S)
    if key_valid is not None:
        allowed = allowed & key_valid[:, None, None, :].bool()  # (B, 1, T, S)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)
