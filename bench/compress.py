"""Compression benchmark: which int8 path, and what pruning and int8 buy on a real trained model.

    python bench/compress.py --model runs/sentiment_minilm/model --layers 3 --heads 0.3 --neurons 0.3 \
        --finetune 4 --lr 8e-5 --distill 0.5 --hidden 1 --pruned-sensitive 0   # the recipe's compress:

Six measurements, side by side in one run, written to bench/results/compress_<model>.json (the
data is the split the model was trained on, from its meta.json, unless --data names one):

1. ``linear_shapes``: one Linear, fp32 against Sora's dynamic int8 (fbgemm, or oneDNN for many rows
   where the CPU has AMX: ``machine.int8_kernel``), at 40 rows (one sentence) and
   1,280 rows (32 sentences). Where int8 loses is where ``QuantizeConfig.min_weights`` keeps fp32.
2. ``int8_paths``: whole models (the trained one, and a randomly initialised BERT-sized one with
   all-MiniLM-L6-v2's shape), fp32 against ``torch.ao.quantization.quantize_dynamic``, torchao's
   ``Int8DynamicActivationInt8WeightConfig`` (eager) and Sora's int8, at batch 1 and 32 on real
   test sentences.
3. ``int8_settings``: per-call activation scales, the most sensitive Linears row-scaled or in fp32
   maths, every Linear row-scaled: predictions changed against fp32, KL, accuracy, speed-up.
4. ``int8_batch_sizes``: fp32 against the default int8 at batch 1 to 64 (never slower?).
5. ``compress``: ``sora compress`` on the trained model (importance on validation, prune heads,
   neurons and the vocabulary, fine-tune, int8), every variant evaluated on the test split.
6. ``bert_sized``: the same variants' size and speed on the BERT-sized model (no accuracy: random).

Latency: in-process, warm-up, best of N with the variants interleaved; ratios to fp32, never
absolute claims. The machine is shared: figures move by 15-50% from run to run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sora.compress import (
    CompressConfig,
    FinetuneConfig,
    LoRAConfig,
    PruneConfig,
    QuantizeConfig,  # noqa: E402
    magnitude_scores,
    plan_from_scores,
    prune_model,
    quantize_model,
    save_quantized,
)
from sora.compress.measure import compare_latency, count_weights, timing_batches, weights_bytes  # noqa: E402
from sora.compress.stage import FOLDERS, compress_model  # noqa: E402
from sora.models import ModelConfig, build_model, load_meta, load_model, load_tokenizer, save_model  # noqa: E402
from sora.particles.int8 import kernel_choice  # noqa: E402

BERT_SIZED = dict(
    arch="encoder_classifier",
    vocab_size=30522,
    d_model=384,
    head_dim=32,
    encoder={"n_layers": 6, "n_heads": 12, "d_ff": 1536},
    norm_position="post",
    embed_norm=True,
    norm_eps=1e-12,
    max_len=128,
    n_classes=2,
    pooling="mean",
    dropout=0.1,
)


def linear_shapes(repeats: int) -> list[dict]:
    """Sora's int8 against fp32 at 40 rows (one sentence) and 1,280 (32 sentences), and each int8
    kernel on its own at 8 to 1,280 rows: where ``ONEDNN_FROM_ROWS`` should sit."""
    from sora.particles import int8

    engines = {"fbgemm": None, **({"onednn": 1} if "onednn" in torch.backends.quantized.supported_engines else {})}
    chosen = int8.ONEDNN_FROM_ROWS
    rows = []
    for d_in, d_out in [
        (128, 128),
        (128, 256),
        (256, 256),
        (256, 512),
        (384, 384),
        (384, 1536),
        (1536, 384),
        (768, 768),
        (768, 3072),
    ]:
        fp32 = torch.nn.Linear(d_in, d_out).eval()
        q = int8.Int8Linear.from_linear(fp32)
        row = {"shape": [d_in, d_out], "weights": d_in * d_out, "kernels": {}}
        for n in (8, 40, 256, 512, 1280):
            x = [{"x": torch.randn(1, n, d_in)}]
            runs = {"fp32": lambda b: fp32(b["x"]), "int8": lambda b: q(b["x"])}
            row["kernels"][str(n)] = {}
            for engine, from_rows in engines.items():
                int8.ONEDNN_FROM_ROWS = from_rows
                try:
                    t = compare_latency(runs, x, repeats=repeats)
                finally:
                    int8.ONEDNN_FROM_ROWS = chosen
                row["kernels"][str(n)][engine] = round(t["fp32"] / t["int8"], 3)
            if n in (40, 1280):  # what Sora runs: the kernel its rows choose
                row[f"int8_speedup_rows{n}"] = row["kernels"][str(n)][
                    "onednn" if chosen is not None and n >= chosen else "fbgemm"
                ]
        rows.append(row)
        print(
            f"  Linear {d_in}x{d_out}: int8 x{row['int8_speedup_rows40']:.2f} at 40 rows, "
            f"x{row['int8_speedup_rows1280']:.2f} at 1280 rows; kernels "
            + ", ".join(
                f"{n} rows " + "/".join(f"{e} x{v:.2f}" for e, v in k.items()) for n, k in row["kernels"].items()
            ),
            flush=True,
        )
    return rows


def runner(model: torch.nn.Module):
    """What compare_latency times: one forward pass of ``model`` on a batch."""
    return lambda batch: model(batch["inputs"], batch["valid"])


def latency_batches(data) -> dict[int, list[dict]]:
    """Random test sentences, as the compress stage times them: eight alone, and four batches of 32."""
    return {b: timing_batches(data, "test", b) for b in (1, 32)}


def int8_paths(model: torch.nn.Module, batches: dict[int, list[dict]], repeats: int) -> dict:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = model.eval()
    ao = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    tao = copy.deepcopy(model)
    quantize_(tao, Int8DynamicActivationInt8WeightConfig())
    ours = quantize_model(model)
    variants = {"fp32": model, "torch.ao quantize_dynamic": ao, "torchao int8 dyn (eager)": tao, "sora int8": ours}
    runs = {k: runner(m) for k, m in variants.items()}
    out = {}
    for b, batch in batches.items():
        t = compare_latency(runs, batch, repeats=repeats)
        out[str(b)] = {k: round(t["fp32"] / v, 3) for k, v in t.items()}
        print(f"  batch {b}: " + ", ".join(f"{k} x{v:.2f}" for k, v in out[str(b)].items()), flush=True)
    with torch.inference_mode():
        ref = model(batches[32][0]["inputs"], batches[32][0]["valid"])
        out["max_abs_logit_diff"] = {
            k: round(float((m(batches[32][0]["inputs"], batches[32][0]["valid"]) - ref).abs().max()), 5)
            for k, m in variants.items()
            if k != "fp32"
        }
    out["sora_int8_linears"] = len(ours.config.quantization["linear"])
    return out


INT8_SETTINGS = {  # name -> QuantizeConfig overrides; the sensitive Linears are measured on validation batches
    "per call": {"sensitive": 0},
    "2 sensitive in fp32 maths": {"sensitive": 2, "sensitive_as": "fp32"},
    "2 sensitive row-scaled": {"sensitive": 2},
    "4 sensitive row-scaled (default)": {"sensitive": 4},
    "6 sensitive row-scaled": {"sensitive": 6},
    "8 sensitive row-scaled": {"sensitive": 8},
    "every Linear row-scaled": {"activations": "row"},
}


def int8_settings(model: torch.nn.Module, data, batches: dict[int, list[dict]], repeats: int) -> dict:
    """How far each int8 setting moves the trained model's predictions, and what it costs.

    Accuracy on 1,280 snippets moves by about 0.5 point between int8 variants by chance (they flip
    a few dozen predictions each way), so each setting also reports how many predictions differ
    from fp32 and the mean KL(fp32 || int8) on validation and test: the size of the disturbance,
    which the expected accuracy loss follows."""
    import torch.nn.functional as F

    from sora.compress.sensitivity import quantize_calibrated, sensitivity_ranking
    from sora.tasks import task_for

    task = task_for(data, model)
    model = model.eval()
    ranking, _ = sensitivity_ranking(model, data, task)  # measured once, shared by every setting

    @torch.inference_mode()
    def outputs(m, split):
        logits, labels = zip(*[(task.forward(m, b).float(), b["labels"]) for b in data.loader(split, 64)])
        return torch.cat(logits), torch.cat(labels)

    reference = {split: outputs(model, split) for split in ("validation", "test")}
    variants, out = {}, {}
    for name, overrides in INT8_SETTINGS.items():
        variants[name] = quantize_calibrated(
            model, data, task, QuantizeConfig(**overrides), log=lambda _: None, ranking=ranking
        )
        out[name] = {"config": overrides}
        for split, (ref, labels) in reference.items():
            logits, _ = outputs(variants[name], split)
            pred, ref_pred = logits.argmax(-1), ref.argmax(-1)
            kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(ref, -1), log_target=True, reduction="batchmean")
            out[name][split] = {
                "accuracy": round(float((pred == labels).float().mean()), 4),
                "points_lost": round(
                    100 * float((ref_pred == labels).float().mean() - (pred == labels).float().mean()), 2
                ),
                "predictions_changed": int((pred != ref_pred).sum()),
                "examples": int(labels.numel()),
                "kl_milli_nats": round(1e3 * float(kl), 3),
            }
        print(
            f"  {name}: "
            + ", ".join(
                f"{s} {out[name][s]['predictions_changed']} changed, "
                f"KL {out[name][s]['kl_milli_nats']:.2f}e-3, {-out[name][s]['points_lost']:+.2f} points"
                for s in reference
            ),
            flush=True,
        )
    runs = {k: (lambda m: lambda b: task.forward(m, b))(m) for k, m in {"fp32": model, **variants}.items()}
    for b, batch in batches.items():
        t = compare_latency(runs, batch, repeats=repeats)
        for name in variants:
            out[name][f"speedup_b{b}"] = round(t["fp32"] / t[name], 3)
        print(f"  batch {b}: " + ", ".join(f"{k} x{t['fp32'] / t[k]:.2f}" for k in variants), flush=True)
    return out


BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def speedups_by_batch_size(models: dict[str, torch.nn.Module], datas: dict, repeats: int) -> dict:
    """Each model against ``models["fp32"]`` at every batch size in ``BATCH_SIZES``; ``datas``: each
    model's data (the same texts, through its own tokenizer)."""
    runs = {k: runner(m.eval()) for k, m in models.items()}
    out = {}
    for size in BATCH_SIZES:
        t = compare_latency(runs, {k: timing_batches(d, "test", size) for k, d in datas.items()}, repeats=repeats)
        out[str(size)] = {k: round(t["fp32"] / v, 3) for k, v in t.items() if k != "fp32"}
        print(f"  batch {size}: " + ", ".join(f"{k} x{v:.2f}" for k, v in out[str(size)].items()), flush=True)
    return out


def batch_sizes(model: torch.nn.Module, data, repeats: int) -> dict:
    """fp32 against the default int8 (sensitive Linears measured on validation) at batch 1 to 64:
    int8 must never be slower, whichever kernel the rows pick."""
    from sora.compress.sensitivity import quantize_calibrated
    from sora.tasks import task_for

    model = model.eval()
    int8 = quantize_calibrated(model, data, task_for(data, model), QuantizeConfig(), log=lambda _: None)
    return speedups_by_batch_size({"fp32": model, "int8": int8}, {"fp32": data, "int8": data}, repeats)


def variants_by_batch_size(model_dir: Path, data, folder: Path, repeats: int) -> dict:
    """Each compressed variant against the fp32 model at batch 1 to 64 (the compress stage times
    batch 1 and 32 only); pruned variants read the texts through their own tokenizer."""
    folders = {
        "fp32": model_dir,
        **{name: folder / sub for name, sub in FOLDERS.items() if (folder / sub / "config.json").is_file()},
    }
    datas = {k: data.retokenized(load_tokenizer(v)) if "pruned" in k else data for k, v in folders.items()}
    return speedups_by_batch_size({k: load_model(v) for k, v in folders.items()}, datas, repeats)


def settings_mean(per_model: list[dict]) -> dict:
    """Each int8 setting averaged over several fine-tunings: chance moves average out."""
    mean = lambda values: round(sum(values) / len(values), 3)  # noqa: E731
    out = {}
    for name in per_model[0]:
        rows = [m[name] for m in per_model]
        out[name] = {
            "models": len(rows),
            **{
                f"{split}_{key}": mean([r[split][key] for r in rows])
                for split in ("validation", "test")
                for key in ("points_lost", "predictions_changed", "kl_milli_nats")
            },
            **{k: mean([r[k] for r in rows]) for k in rows[0] if k.startswith("speedup")},
        }
    return out


def bert_sized(batches: dict[int, list[dict]], repeats: int, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**BERT_SIZED)).eval()
    plan = plan_from_scores(model, magnitude_scores(model), heads=0.5, neurons=0.5)
    pruned = prune_model(model, plan).eval()
    variants = {"fp32": model, "pruned": pruned, "int8": quantize_model(model), "pruned+int8": quantize_model(pruned)}
    sizes = {}
    for name, m in variants.items():
        folder = tmp / name.replace("+", "_")
        (save_quantized if m.config.quantization else save_model)(m, folder)
        sizes[name] = weights_bytes(folder)
    runs = {k: runner(m) for k, m in variants.items()}
    out = {
        "config": BERT_SIZED,
        "prune": "50% of heads and 50% of neurons (weight-magnitude ranking; speed only)",
        "variants": {},
    }
    timings = {b: compare_latency(runs, batch, repeats=repeats) for b, batch in batches.items()}
    for name, m in variants.items():
        out["variants"][name] = {
            "parameters": count_weights(m),
            "bytes": sizes[name],
            "smaller": round(sizes["fp32"] / sizes[name], 3),
            "speedup": {str(b): round(timings[b]["fp32"] / timings[b][name], 3) for b in batches},
        }
        print(
            f"  {name}: {sizes['fp32'] / sizes[name]:.2f}x smaller, speed-up "
            + ", ".join(f"b{b} x{timings[b]['fp32'] / timings[b][name]:.2f}" for b in batches),
            flush=True,
        )
    return out


def prepare(model_dir: Path, data_path: Path | None, limit: int | None):
    """The model's own data config (meta.json provenance: the same split it was trained on), or ``data_path``."""
    from sora.configio import validate
    from sora.data import DataConfig, prepare_data, read_data_config

    if data_path is not None:
        cfg = read_data_config(data_path, [f"limit={limit}"] if limit else [])
    else:
        section = {**load_meta(model_dir)["provenance"]["data_config"], **({"limit": limit} if limit else {})}
        cfg = validate(DataConfig, section, source=f"{model_dir}/meta.json", prefix=("data",))
    return prepare_data(cfg, tokenizer=load_tokenizer(model_dir))


def targets(variants: dict, metric: str) -> dict:
    """The issue's targets, checked against what was measured (points = percentage points)."""
    base = variants["fp32"]["metrics"][metric]
    lost = {k: round(100 * (base - v["metrics"][metric]), 2) for k, v in variants.items()}
    out = {}
    if "pruned" in variants:
        removed = 1 - variants["pruned"]["heads"] / variants["fp32"]["heads"]
        out["heads >= 50% removed, <= 1 point lost"] = {
            "heads_removed": round(removed, 3),
            "points_lost": lost["pruned"],
            "met": removed >= 0.5 and lost["pruned"] <= 1,
        }
    if "int8" in variants:
        v = variants["int8"]
        out["int8 >= 2x at b32, >= 1.3x at b1, <= 0.5 point, >= 3.5x smaller"] = {
            "speedup": v["speedup"],
            "points_lost": lost["int8"],
            "smaller": round(v["smaller"], 2),
            "met": v["speedup"]["32"] >= 2 and v["speedup"]["1"] >= 1.3 and lost["int8"] <= 0.5 and v["smaller"] >= 3.5,
        }
    if "pruned+int8" in variants:
        v = variants["pruned+int8"]
        out["pruned+int8 >= 3x faster, >= 5x smaller, <= 1.5 points"] = {
            "speedup": v["speedup"],
            "points_lost": lost["pruned+int8"],
            "smaller": round(v["smaller"], 2),
            "met": min(v["speedup"].values()) >= 3 and v["smaller"] >= 5 and lost["pruned+int8"] <= 1.5,
        }
    return out


def model_name(model_dir: Path) -> str:
    return model_dir.parent.name if model_dir.name in ("model", "best") else model_dir.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        type=Path,
        nargs="+",
        default=[ROOT / "runs/sentiment/model"],
        help="trained fp32 model folders (each compressed and measured)",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="recipe or data YAML (default: each model's own, from its meta.json)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/compress_<model>.json")
    parser.add_argument("--repeats", type=int, default=6, help="best-of-N timing repeats")
    parser.add_argument("--heads", type=float, default=0.5, help="fraction of heads to prune")
    parser.add_argument("--neurons", type=float, default=0.5, help="fraction of feed-forward neurons to prune")
    parser.add_argument("--layers", type=int, default=0, help="blocks to drop")
    parser.add_argument(
        "--vocabulary",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep only the tokens the training texts use (WordPiece models)",
    )
    parser.add_argument("--finetune", type=float, default=1.0, help="fine-tuning epochs after pruning (0 = none)")
    parser.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate")
    parser.add_argument("--lora", action="store_true", help="fine-tune LoRA adapters (attn + ffn) only")
    parser.add_argument("--distill", type=float, default=0.0, help="weight of distillation from the unpruned model")
    parser.add_argument("--hidden", type=float, default=0.0, help="weight of layer distillation (block outputs)")
    parser.add_argument(
        "--pruned-sensitive",
        type=int,
        default=None,
        help="sensitive Linears of the pruned model's int8 (default: the same as the full model's)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the compressed model folders here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="cap each split (smoke runs)")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["shapes", "paths", "settings", "sizes", "compress", "bert"]
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for model_dir in args.model:
        if not (model_dir / "config.json").is_file():
            sys.exit(f"{model_dir}: no trained model (run: sora run recipes/<recipe>.yaml --out {model_dir.parent})")
    if args.out is None:
        args.out = ROOT / "bench/results" / f"compress_{'_'.join(model_name(d) for d in args.model)}.json"
    started = time.time()
    results: dict = {
        "machine": {
            "cpu_threads": args.threads,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_start": os.getloadavg(),
            "int8_kernel": kernel_choice(),
        },
        "command": " ".join(["python", "bench/compress.py", *sys.argv[1:]]),
        "data": str(args.data or "each model's meta.json"),
        "models": {},
    }
    if "shapes" not in args.skip:
        print(f"Linear shapes: fp32 vs dynamic int8 ({results['machine']['int8_kernel']})", flush=True)
        results["linear_shapes"] = linear_shapes(args.repeats)
    batches = None
    for model_dir in args.model:
        entry: dict = {"model": str(model_dir)}
        results["models"][model_name(model_dir)] = entry
        data = prepare(model_dir, args.data, args.limit)
        batches = latency_batches(data)
        if "paths" not in args.skip:
            print(f"int8 paths on {model_dir}", flush=True)
            entry["int8_paths"] = int8_paths(load_model(model_dir), batches, args.repeats)
        if "settings" not in args.skip:
            print(f"int8 settings on {model_dir}", flush=True)
            entry["int8_settings"] = int8_settings(load_model(model_dir), data, batches, args.repeats)
        if "sizes" not in args.skip:
            print(f"int8 by batch size on {model_dir}", flush=True)
            entry["int8_batch_sizes"] = batch_sizes(load_model(model_dir), data, args.repeats)
        if "compress" not in args.skip:
            config = CompressConfig(
                prune=PruneConfig(
                    heads=args.heads or None,
                    neurons=args.neurons or None,
                    layers=args.layers or None,
                    vocabulary=args.vocabulary,
                ),
                finetune=FinetuneConfig(
                    epochs=args.finetune,
                    lr=args.lr,
                    distill=args.distill,
                    hidden=args.hidden,
                    lora=LoRAConfig(rank=16, alpha=32, targets=["attn", "ffn"]) if args.lora else None,
                )
                if args.finetune > 0
                else None,
                quantize=QuantizeConfig(),
                latency_repeats=args.repeats,
                pruned_quantize=None
                if args.pruned_sensitive is None
                else QuantizeConfig(sensitive=args.pruned_sensitive),
            )
            print(f"sora compress on {model_dir}: {config.model_dump(exclude_defaults=True)}", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                folder = args.keep / model_name(model_dir) if args.keep else Path(tmp) / "compress"
                report = compress_model(model_dir, data, config, folder, log=lambda m: print("  " + m))
                curve = variants_by_batch_size(model_dir, data, folder, args.repeats)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                for part, suffix in (("report.md", "md"), ("plot.png", "png")):  # beside the JSON, same stem
                    shutil.copyfile(
                        folder / part, args.out.with_name(f"{args.out.stem}_{model_name(model_dir)}.{suffix}")
                    )
            entry["compress"] = {
                k: report[k]
                for k in ("task", "metric", "eval_split", "variants", "pruning", "config", "latency_method")
            }
            entry["compress"]["targets"] = targets(report["variants"], report["metric"])
            entry["compress"]["speedup_by_batch_size"] = curve
    measured = [e["int8_settings"] for e in results["models"].values() if "int8_settings" in e]
    if len(measured) > 1:
        results["int8_settings_mean"] = settings_mean(measured)
    if "bert" not in args.skip and batches is not None:
        print("BERT-sized (random weights): int8 paths, then size and speed of the variants", flush=True)
        torch.manual_seed(0)
        results["bert_sized_random"] = {
            "int8_paths": int8_paths(build_model(ModelConfig(**BERT_SIZED)), batches, max(2, args.repeats // 2))
        }
        with tempfile.TemporaryDirectory() as tmp:
            results["bert_sized_random"]["variants"] = bert_sized(batches, max(2, args.repeats // 2), Path(tmp))
    results["machine"]["load_average_end"] = os.getloadavg()
    results["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
