"""Batch prediction: Sora's Predictor against ``transformers.pipeline("text-classification")`` on the same weights.

The model is a ``BertForSequenceClassification`` made from all-MiniLM-L6-v2 (its classifier head drawn with a
fixed seed: the labels need not be right, only the same on both sides), imported into Sora with ``sora hf import``
and exported to ONNX (fp32 and int8). Inputs: every Rotten Tomatoes snippet (12,808), fed in chunks of 1,024 as
``sora predict`` streams them. The arms take turns chunk by chunk, so they share whatever else the machine
does; each arm's time is the sum over chunks, repeated ``--repeats`` times (the median is reported).

    python bench/predict_vs_pipeline.py        # writes bench/results/predict_vs_pipeline.json

Arms: transformers.pipeline (batch_size 32, arrival order), Sora torch fp32, Sora onnxruntime fp32,
Sora onnxruntime int8, Sora torch int8 (``sora quantize``). Label agreement with the pipeline is reported
for each Sora arm.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sora.atomic import staged_file
from sora.compress.quantize import quantize_model, save_quantized
from sora.data.builtin import fetch
from sora.deploy import Predictor
from sora.deploy.export import export_onnx
from sora.interop.importer import import_to_folder
from sora.interop.sources import packaged_path
from sora.models import load_meta, load_model, load_tokenizer

OUT = Path(__file__).parent / "results" / "predict_vs_pipeline.json"
CHUNK = 1024  # records per chunk, as `sora predict` streams a file


def snippets(limit: int | None) -> list[str]:
    with open(fetch("rotten_tomatoes") / "data.csv", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    return texts[:limit] if limit else texts


def make_hf_classifier(folder: Path):
    """all-MiniLM-L6-v2 with a sequence-classification head (seed 0), saved as a Hugging Face folder."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    source = packaged_path("all-minilm-l6-v2")
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "rotten", 1: "fresh"}, label2id={"rotten": 0, "fresh": 1}
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def sora_int8(model_dir: Path, out_dir: Path) -> Path:
    """The torch int8 variant, as `sora quantize` writes it (its default settings)."""
    model = quantize_model(load_model(model_dir))
    return save_quantized(model, out_dir, tokenizer=load_tokenizer(model_dir), meta=load_meta(model_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="first N snippets only (a quick look)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import pipeline

    texts = snippets(args.limit)
    chunks = [texts[i : i + CHUNK] for i in range(0, len(texts), CHUNK)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hf_model, hf_tok = make_hf_classifier(tmp / "hf")
        import_to_folder(tmp / "hf", tmp / "sora")
        export_onnx(tmp / "sora", tmp / "onnx", log=lambda *_: None)
        export_onnx(tmp / "sora", tmp / "onnx_int8", int8=True, log=lambda *_: None)
        sora_int8(tmp / "sora", tmp / "sora_int8")
        pipe = pipeline("text-classification", model=hf_model, tokenizer=hf_tok, device="cpu", batch_size=32)
        arms = {
            "transformers.pipeline": lambda chunk: [r["label"] for r in pipe(chunk, truncation=True, max_length=128)],
        }
        predictors = {
            "sora torch fp32": Predictor.load(tmp / "sora", backend="torch"),
            "sora onnxruntime fp32": Predictor.load(tmp / "onnx", backend="onnxruntime"),
            "sora onnxruntime int8": Predictor.load(tmp / "onnx_int8", backend="onnxruntime"),
            "sora torch int8": Predictor.load(tmp / "sora_int8", backend="torch"),
        }
        auto = Predictor.load(tmp / "onnx").backend  # what `sora predict` on the fp32 export runs by default
        for name, p in predictors.items():
            arms[name] = lambda chunk, p=p: [r["label"] for r in p.predict(chunk, batch_size=32)]
        seconds = {name: [] for name in arms}
        labels: dict[str, list[str]] = {}
        for r in range(args.repeats):
            spent = dict.fromkeys(arms, 0.0)
            out = {name: [] for name in arms}
            for chunk in chunks:
                for name, run in arms.items():
                    start = time.perf_counter()
                    out[name] += run(chunk)
                    spent[name] += time.perf_counter() - start
            for name in arms:
                seconds[name].append(spent[name])
            labels = out
            print(f"repeat {r + 1}: " + ", ".join(f"{n} {s:.1f} s" for n, s in spent.items()), flush=True)
    reference = labels["transformers.pipeline"]
    base = statistics.median(seconds["transformers.pipeline"])
    results = {
        "snippets": len(texts),
        "chunk": CHUNK,
        "batch_size": 32,
        "threads": args.threads,
        "auto_backend_on_fp32_export": auto,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "machine": platform.machine(),
        "torch": torch.__version__,
        "arms": {
            name: {
                "seconds": [round(s, 2) for s in secs],
                "snippets_per_s": round(len(texts) / statistics.median(secs), 1),
                "speedup_vs_pipeline": round(base / statistics.median(secs), 2),
                "speedup_range": [round(base_s / s, 2) for base_s, s in zip(seconds["transformers.pipeline"], secs)],
                "label_agreement": round(sum(a == b for a, b in zip(labels[name], reference)) / len(reference), 4),
            }
            for name, secs in seconds.items()
        },
    }
    with staged_file(args.out) as tmp_out:
        tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    for name, row in results["arms"].items():
        print(
            f"{name:24s} {row['snippets_per_s']:8.1f} snippets/s  {row['speedup_vs_pipeline']:.2f}x  "
            f"agreement {row['label_agreement']:.4f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
