"""Text pairs: two texts read as one sequence, ``[CLS] a [SEP] b [SEP]``, with segment ids (BERT's token types).

A question and its paragraph, a premise and its hypothesis: the model sees both at once and tells them
apart by the segment id of each token (0 for ``a`` and its separator, 1 for ``b`` and the last separator),
exactly as transformers' tokenizers encode pairs. A pretrained tokenizer keeps its own pair template
(BERT's); one trained here gets ``[CLS] a [EOS] b [EOS]`` (sora.data.tokenizer.configure_for_task).
Truncation of a pair shortens the longer text first, as transformers does.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer


def encode_pairs(tok: Tokenizer, firsts: list[str], seconds: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each pair's token ids and segment ids (int32, the same length)."""
    if not firsts:
        return [], []
    encodings = tok.encode_batch(list(zip(firsts, seconds)))
    ids = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
    segments = [np.asarray(e.type_ids, dtype=np.int32) for e in encodings]
    return ids, segments
