"""Attention kernels by shape on CPU: SDPA's fused kernel against the explicit softmax(QK^T/sqrt(dh))V path.

Measures both at inference (``torch.inference_mode``) on random queries, keys and values with a padding mask, for
the head shapes of all-MiniLM-L6-v2 (12 heads of 32) and the GPT-2-shaped decoder of bench/inference_vs_hf.py (4
heads of 64), at batch 1, 8 and 32, over query = key lengths 8-128 and a decoding step's single query. The two take
turns and each keeps its best of ``--repeats``; the ratio is SDPA's time over the explicit path's (above 1: the
explicit path is faster). ``sora.particles.attention.EXPLICIT_KEYS`` is read from these figures. Writes
``bench/results/attention_kernels.json``; asserts nothing about speed.

    python bench/attention_kernels.py [--threads 1] [--repeats 9]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sora.atomic import staged_file  # noqa: E402
from sora.particles.attention import EXPLICIT_KEYS  # noqa: E402

OUT = Path(__file__).parent / "results" / "attention_kernels.json"
HEADS = {"minilm_12x32": (12, 32), "gpt_4x64": (4, 64)}
LENGTHS = [8, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 96, 128]


def explicit(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + mask  # (B, H, T, S)
    return scores.softmax(-1) @ v


def sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def ratio(B: int, H: int, dh: int, T: int, S: int, repeats: int) -> float:
    """SDPA's best time over the explicit path's, for T queries and S keys."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, T, dh, generator=g)
    k, v = torch.randn(B, H, S, dh, generator=g), torch.randn(B, H, S, dh, generator=g)
    mask = torch.zeros(B, 1, 1, S)
    mask[0, ..., S // 2 :] = torch.finfo(torch.float32).min  # one padded row, as in a real batch
    calls = max(3, 4000 // (B * T))
    best = {explicit: math.inf, sdpa: math.inf}
    for _ in range(repeats):
        for kernel in best:
            start = time.perf_counter()
            for _ in range(calls):
                kernel(q, k, v, mask)
            best[kernel] = min(best[kernel], time.perf_counter() - start)
    return round(best[sdpa] / best[explicit], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    with torch.inference_mode():
        for name, (H, dh) in HEADS.items():
            for B in (1, 8, 32):
                row = {f"T={T}": ratio(B, H, dh, T, T, args.repeats) for T in LENGTHS}
                row.update({f"step S={S}": ratio(B, H, dh, 1, S, args.repeats) for S in (16, 64, 144)})
                results[f"{name} batch {B}"] = row
                print(name, B, row, flush=True)
    payload = {
        "benchmark": "SDPA time / explicit attention time at inference, best of repeats (above 1: explicit faster)",
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "explicit_keys_rule": list(EXPLICIT_KEYS),
        "ratios": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(args.out) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
