"""fp32 inference on CPU: Sora against Hugging Face transformers on the same weights and the same inputs.

Two pairs, each model given the other's weights through ``sora hf import``:
- encoder forward: all-MiniLM-L6-v2 (``BertModel``, no pooler: both give the last hidden states) on real padded
  batches of Rotten Tomatoes snippets in arrival order, at batch 1, 8 and 32;
- greedy generation: a GPT-2-shaped decoder (4 layers, d=256, 4 heads, vocab 5,000, random init) continuing
  16-token prompts by 128 tokens, Sora's ``generate`` against ``GPT2LMHeadModel.generate`` with its cache, at
  batch 1 and 8; the tokens must be identical (the script fails otherwise).

Arms alternate within each repetition (the order flips every repetition), so a busy machine hurts both alike.
Every figure is the median of the repetitions with its range; ``speedup`` is transformers' time over Sora's,
repetition by repetition. Both run under ``torch.inference_mode``. Writes ``bench/results/inference_vs_hf.json``
and asserts nothing about speed.

    python bench/inference_vs_hf.py [--threads 1 2] [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's sora, not an installed one

from sora.atomic import staged_file  # noqa: E402
from sora.data.builtin import fetch  # noqa: E402
from sora.interop import import_hf  # noqa: E402
from sora.interop.sources import packaged_path  # noqa: E402

OUT = Path(__file__).parent / "results" / "inference_vs_hf.json"
GPT = dict(n_layer=4, n_embd=256, n_head=4, vocab_size=5000, n_positions=256)
PROMPT, NEW_TOKENS = 16, 128


def snippets() -> list[str]:
    with open(fetch("rotten_tomatoes") / "data.csv", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def padded_batches(tokenizer, texts: list[str], batch: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of ``batch`` snippets in arrival order, padded to their longest (at most 128 tokens)."""
    out = []
    for start in range(0, batch * count, batch):
        rows = [e.ids[:128] for e in tokenizer.encode_batch(texts[start : start + batch])]
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        out.append((ids, ids != 0))
    return out


def interleaved(arms: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per repetition of each arm; the arms take turns, in an order that flips every repetition."""
    seconds = {name: [] for name in arms}
    names = list(arms)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            arms[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def summary(seconds: dict[str, list[float]], units: int) -> dict:
    sora, hf = seconds["sora"], seconds["hf"]
    ratios = [h / s for s, h in zip(sora, hf)]
    return {
        "sora_ms": round(1e3 * statistics.median(sora), 2),
        "hf_ms": round(1e3 * statistics.median(hf), 2),
        "sora_ms_range": [round(1e3 * min(sora), 2), round(1e3 * max(sora), 2)],
        "hf_ms_range": [round(1e3 * min(hf), 2), round(1e3 * max(hf), 2)],
        "units_per_repetition": units,
        "speedup": round(statistics.median(ratios), 3),
        "speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "load_average": round(os.getloadavg()[0], 2),
    }


def encoder_pair():
    from transformers import BertModel

    source = packaged_path("all-minilm-l6-v2")
    imported = import_hf(source)
    hf = BertModel.from_pretrained(source, add_pooling_layer=False).eval()
    return imported.model.eval(), hf, imported.tokenizer


def bench_encoder(sora, hf, batches, repeats: int) -> dict:
    def run_sora():
        for ids, valid in batches:
            sora(ids, valid)

    def run_hf():
        for ids, valid in batches:
            hf(input_ids=ids, attention_mask=valid.long())

    ids, valid = batches[0]  # one untimed call each: warm-up, and how far apart they are
    worst = float((sora(ids, valid) - hf(input_ids=ids, attention_mask=valid.long())[0]).abs()[valid].max())
    seconds = interleaved({"sora": run_sora, "hf": run_hf}, repeats)
    real = sum(int(v.sum()) for _, v in batches)
    positions = sum(v.numel() for _, v in batches)
    return {
        **summary(seconds, len(batches)),
        "padding": round(1 - real / positions, 3),
        "max_abs_diff": worst,  # on the first batch
    }


def decoder_pair(folder: Path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(**GPT, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    GPT2LMHeadModel(config).save_pretrained(folder)
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    return import_hf(folder).model.eval(), hf


def bench_generation(sora, hf, prompts: torch.Tensor, repeats: int, new_tokens: int) -> dict:
    out = {}

    def run_sora():
        out["sora"] = sora.generate(prompts, new_tokens)

    def run_hf():
        out["hf"] = hf.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )

    run_sora(), run_hf()  # warm-up, untimed
    seconds = interleaved({"sora": run_sora, "hf": run_hf}, repeats)
    same = torch.equal(out["sora"], out["hf"])
    if not same:
        differs = (out["sora"] != out["hf"]).any(0).nonzero()
        raise SystemExit(f"generation differs from transformers first at position {int(differs[0])}")
    return {**summary(seconds, prompts.shape[0] * new_tokens), "identical_tokens": same}


def gpt_prompts(tokenizer, texts: list[str], batch: int) -> torch.Tensor:
    """(batch, 16) ids: the first 16 tokens of the first snippets that long, folded into the 5,000-token vocab."""
    rows = [e.ids[:PROMPT] for e in tokenizer.encode_batch(texts[:200]) if len(e.ids) >= PROMPT][:batch]
    return torch.tensor(rows) % GPT["vocab_size"]


def run_all(args, threads: int, models: dict, texts: list[str]) -> dict:
    torch.set_num_threads(threads)
    sora_enc, hf_enc, tokenizer = models["encoder"]
    sora_gpt, hf_gpt = models["decoder"]
    enc_counts = {1: 8, 8: 4, 32: 2} if args.quick else {1: 64, 8: 16, 32: 8}
    result = {"encoder": {}, "generation": {}}
    for batch, count in enc_counts.items():
        batches = padded_batches(tokenizer, texts, batch, count)
        result["encoder"][f"batch_{batch}"] = row = bench_encoder(sora_enc, hf_enc, batches, args.repeats)
        print(f"threads {threads} encoder batch {batch}: {row}", flush=True)
    new_tokens = 16 if args.quick else NEW_TOKENS
    for batch in (1, 8):
        prompts = gpt_prompts(tokenizer, texts, batch)
        result["generation"][f"batch_{batch}"] = row = bench_generation(
            sora_gpt, hf_gpt, prompts, args.repeats, new_tokens
        )
        print(f"threads {threads} generation batch {batch}: {row}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few batches, 16 new tokens, 2 repeats")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.repeats = min(args.repeats, 2)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import transformers

    texts = snippets()
    with tempfile.TemporaryDirectory() as tmp:
        models = {"encoder": encoder_pair(), "decoder": decoder_pair(Path(tmp) / "gpt2")}  # loaded as users load
    with torch.inference_mode():
        runs = {f"threads_{t}": run_all(args, t, models, texts) for t in args.threads}
    payload = {
        "benchmark": "fp32 CPU inference, Sora vs transformers, same weights and inputs, interleaved repetitions",
        "quick": args.quick,
        "repeats": args.repeats,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "encoder": "all-MiniLM-L6-v2, Rotten Tomatoes snippets in arrival order (ms per repetition of all batches)",
        "generation": f"GPT-2 shaped {GPT}, prompts of {PROMPT} tokens, greedy",
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(args.out) as tmp_out:
        tmp_out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
