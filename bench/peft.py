"""Parameter-efficient fine-tuning against full fine-tuning: trainable fraction, time per step, peak memory.

    python bench/peft.py --steps 20 --threads 1

An all-MiniLM-L6-v2-shaped model (random weights: speed and memory do not depend on the values) trains on
synthetic batches shaped like the two recipes that fine-tune it: sentiment_minilm (32 sentences of 40
tokens, a classifier) and qa_minilm (16 questions, about 20 windows of 192 tokens, a span head). Each
variant (full, lora r=8 on q and v, bottleneck m=64 after attention and feed-forward) runs in its own
process, so its peak resident memory is its own. Best of the timed steps after two warm-up steps.
Writes bench/results/peft.json. The metric each reaches is the recipes' to measure, not this script's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {"sentiment_minilm": ("encoder_classifier", 32, 40), "qa_minilm": ("span_extractor", 20, 192)}
VARIANTS = {
    "full": None,
    "lora": {"kind": "lora", "rank": 8, "alpha": 16, "targets": ["q", "v"]},
    "bottleneck": {"kind": "bottleneck", "size": 64},
}


def one(recipe: str, variant: str, steps: int, threads: int) -> dict:
    import torch

    from sora.models import ModelConfig, build_model
    from sora.models.adapters import apply_adapters, train_only_adapters
    from sora.models.config import AdapterConfig

    torch.set_num_threads(threads)
    arch, batch, length = SHAPES[recipe]
    config = ModelConfig(
        arch=arch, vocab_size=30522, d_model=384, head_dim=32, encoder={"n_layers": 6, "n_heads": 12, "d_ff": 1536},
        norm_position="post", embed_norm=True, norm_eps=1e-12, max_len=512, n_classes=2 if arch != "span_extractor"
        else None, segments=2 if arch == "span_extractor" else 0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config).train()
    if VARIANTS[variant]:
        apply_adapters(model, AdapterConfig(**VARIANTS[variant]))
        counts = train_only_adapters(model)
    else:
        total = sum(p.numel() for p in model.parameters())
        counts = {"trainable": total, "total": total, "fraction": 1.0}
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(5, 30522, (batch, length))
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        out = model(ids, None, torch.ones_like(ids)) if arch == "span_extractor" else model(ids)
        out.float().pow(2).mean().backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if step >= 2:
            times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**counts, "step_s": round(min(times), 3), "median_step_s": round(sorted(times)[len(times) // 2], 3),
            "peak_rss_mb": round(peak_mb, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("RECIPE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.steps, args.threads)))
        return
    results: dict = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "runs": {}}
    for recipe in SHAPES:
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--one", recipe, variant, "--steps", str(args.steps)]
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # this checkout's sora
            done = subprocess.run([*cmd, "--threads", str(args.threads)], capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"{recipe} {variant} failed:\n{done.stderr}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results["runs"].setdefault(recipe, {})[variant] = row
            print(recipe, variant, row, flush=True)
    out = Path(__file__).parent / "results" / "peft.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
