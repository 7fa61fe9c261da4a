"""Length-bucketed against naive (arrival-order) batching on rotten_tomatoes: padding and tokens per second.

Padding is counted over a whole epoch of the training split. Throughput is real (non-padding) tokens
per second through training steps (forward, loss, backward, AdamW) of the sentiment recipe's encoder
(d=128, 2 layers, 4 heads), with the two arms' steps alternating so that both share whatever else the
machine is doing; and through the data loader alone (best of ``--repeats``). Both arms draw from the
same shuffled training split: only how examples are grouped into batches differs.

    python bench/data_bucketing.py            # writes bench/results/data_bucketing.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from sora.data import DataConfig, prepare_data
from sora.data.cache import write_atomic
from sora.models import ModelConfig, build_model

OUT = Path(__file__).parent / "results" / "data_bucketing.json"


def padding(data, batch_size: int, bucket: bool) -> float:
    return data.loader("train", batch_size, shuffle=True, seed=0, epoch=0, bucket=bucket).padding_fraction()


def loader_tokens_per_s(data, batch_size: int, bucket: bool, repeats: int) -> float:
    best = 0.0
    for r in range(repeats):
        start, real = time.perf_counter(), 0
        for batch in data.loader("train", batch_size, shuffle=True, seed=0, epoch=r, bucket=bucket):
            real += int(batch["valid"].sum())
        best = max(best, real / (time.perf_counter() - start))
    return best


def train_tokens_per_s(data, batch_size: int, steps: int, repeats: int) -> dict:
    """Paired measurement: naive and bucketed steps alternate, so both arms share the machine's load.

    Each arm has its own model and optimizer (same initial weights). Both wall time and the process's
    CPU time are summed per arm; CPU time is what the batches cost, even on a busy machine.
    """
    fields = data.model_fields()
    cfg = ModelConfig(
        arch="encoder_classifier",
        input="text",
        vocab_size=fields["vocab_size"],
        d_model=128,
        encoder={"n_layers": 2, "n_heads": 4, "d_ff": 256},
        max_len=data.config.max_len,
        n_classes=fields["n_classes"],
        pooling="mean",
        dropout=0.1,
    )
    arms = {"naive": False, "bucketed": True}
    totals = {a: {"wall_s": 0.0, "cpu_s": 0.0, "real_tokens": 0, "padded_positions": 0, "steps": 0} for a in arms}
    for r in range(repeats):
        runs = {}
        for arm, bucket in arms.items():
            torch.manual_seed(0)
            model = build_model(cfg).train()
            batches = list(data.loader("train", batch_size, shuffle=True, seed=0, epoch=r, bucket=bucket))[:steps]
            runs[arm] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), batches)
        for i in range(steps):
            for arm, (model, opt, batches) in runs.items():
                if i >= len(batches):
                    continue
                b = batches[i]
                wall, cpu = time.perf_counter(), time.process_time()
                loss = torch.nn.functional.cross_entropy(model(b["inputs"], b["valid"]), b["labels"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                t = totals[arm]
                t["wall_s"] += time.perf_counter() - wall
                t["cpu_s"] += time.process_time() - cpu
                t["real_tokens"] += int(b["valid"].sum())
                t["padded_positions"] += b["valid"].numel()
                t["steps"] += 1
    for t in totals.values():
        t["tokens_per_s_wall"] = round(t["real_tokens"] / t["wall_s"])
        t["tokens_per_cpu_s"] = round(t["real_tokens"] / t["cpu_s"])
        t["wall_s"], t["cpu_s"] = round(t["wall_s"], 2), round(t["cpu_s"], 2)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=30, help="training steps timed per arm")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = DataConfig.model_validate(
        {
            "dataset": "rotten_tomatoes",
            "task": "classification",
            "tokenizer": {"kind": "bpe", "vocab_size": 8000},
            "max_len": 128,
            "split": {"validation": 0.1, "test": 0.1, "seed": 0},
        }
    )
    data = prepare_data(cfg)
    lengths = data.splits["train"].lengths
    results = {
        "dataset": "rotten_tomatoes",
        "train_examples": int(len(lengths)),
        "tokens_mean": round(float(lengths.mean()), 1),
        "tokens_max": int(lengths.max()),
        "tokenizer": "byte-level BPE 8000",
        "model": "encoder d=128, 2 layers, 4 heads, d_ff 256",
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "by_batch_size": {},
    }
    for bs in args.batch_sizes:
        train = train_tokens_per_s(data, bs, args.steps, args.repeats)
        row = {}
        for name, bucket in (("naive", False), ("bucketed", True)):
            row[name] = {
                "padding_fraction": round(padding(data, bs, bucket), 4),
                "loader_tokens_per_s": round(loader_tokens_per_s(data, bs, bucket, args.repeats)),
                "train": train[name],
            }
            print(
                f"batch {bs:3d} {name:9s} padding {row[name]['padding_fraction']:.1%}  "
                f"train {train[name]['tokens_per_cpu_s']:,} tok/cpu-s "
                f"({train[name]['tokens_per_s_wall']:,} tok/s wall)  "
                f"loader {row[name]['loader_tokens_per_s']:,} tok/s",
                flush=True,
            )
        row["train_speedup_cpu"] = round(train["bucketed"]["tokens_per_cpu_s"] / train["naive"]["tokens_per_cpu_s"], 2)
        row["train_speedup_wall"] = round(
            train["bucketed"]["tokens_per_s_wall"] / train["naive"]["tokens_per_s_wall"], 2
        )
        results["by_batch_size"][str(bs)] = row
    write_atomic(args.out, (json.dumps(results, indent=2) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
