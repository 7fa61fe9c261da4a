"""ONNX Runtime against Sora's torch model, fp32 and int8, at batch 1 and 32, on the same weights and inputs.

The model is the imported all-MiniLM-L6-v2 classifier of bench/predict_vs_pipeline.py; its export
(``sora export``, fp32 and ``--int8``) and its torch int8 variant (``sora quantize``). Inputs are real Rotten
Tomatoes snippets in padded batches of arrival order. The four arms take turns batch by batch (interleaved, one
process; onnxruntime's threads do not spin between calls, so they leave the cores to the torch arms), and each
reports the median time per batch.

    python bench/onnx_vs_torch.py              # writes bench/results/onnx_vs_torch.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from sora.atomic import staged_file

sys.path.insert(0, str(Path(__file__).parent))
from predict_vs_pipeline import make_hf_classifier, snippets, sora_int8  # noqa: E402  (a sibling script)

from sora.deploy.export import export_onnx  # noqa: E402
from sora.interop.importer import import_to_folder  # noqa: E402
from sora.models import load_model, load_tokenizer  # noqa: E402

OUT = Path(__file__).parent / "results" / "onnx_vs_torch.json"


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def batches(tokenizer, texts: list[str], size: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    tokenizer.enable_padding(pad_id=0)
    out = []
    for i in range(count):
        enc = tokenizer.encode_batch(texts[i * size : (i + 1) * size])
        ids = np.array([e.ids for e in enc], dtype=np.int64)  # (B, T) padded to the longest
        valid = np.array([e.attention_mask for e in enc], dtype=bool)
        out.append((ids, valid))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40, help="batches timed per arm and batch size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = snippets(None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_hf_classifier(tmp / "hf")
        import_to_folder(tmp / "hf", tmp / "sora")
        export_onnx(tmp / "sora", tmp / "onnx", log=lambda *_: None)
        export_onnx(tmp / "sora", tmp / "onnx_int8", int8=True, log=lambda *_: None)
        sora_int8(tmp / "sora", tmp / "sora_int8")
        fp32, int8 = load_model(tmp / "sora").eval(), load_model(tmp / "sora_int8").eval()
        onnx_fp32, onnx_int8 = (
            session(tmp / "onnx" / "model.onnx", args.threads),
            session(tmp / "onnx_int8" / "model.onnx", args.threads),
        )
        tokenizer = load_tokenizer(tmp / "sora")

    def on_torch(model):
        def run(ids, valid):
            with torch.inference_mode():
                return model(torch.from_numpy(ids), torch.from_numpy(valid)).numpy()

        return run

    def on_ort(sess):
        return lambda ids, valid: sess.run(["logits"], {"input_ids": ids, "valid": valid})[0]

    arms = {
        "torch fp32": on_torch(fp32),
        "onnxruntime fp32": on_ort(onnx_fp32),
        "torch int8": on_torch(int8),
        "onnxruntime int8": on_ort(onnx_int8),
    }
    results = {
        "model": "all-MiniLM-L6-v2 + classification head",
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "machine": platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "by_batch_size": {},
    }
    for size in (1, 32):
        work = batches(tokenizer, texts, size, args.batches)
        for ids, valid in work[:3]:  # warm-up
            for run in arms.values():
                run(ids, valid)
        times = {name: [] for name in arms}
        for ids, valid in work:
            for name, run in arms.items():
                start = time.perf_counter()
                run(ids, valid)
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["torch fp32"])
        row = {
            name: {
                "median_ms": round(1000 * statistics.median(t), 2),
                "quartiles_ms": [round(1000 * q, 2) for q in statistics.quantiles(t, n=4)[::2]],
                "speedup_vs_torch_fp32": round(base / statistics.median(t), 2),
            }
            for name, t in times.items()
        }
        results["by_batch_size"][str(size)] = row
        for name, r in row.items():
            print(f"batch {size:2d} {name:18s} {r['median_ms']:8.2f} ms  {r['speedup_vs_torch_fp32']:.2f}x", flush=True)
    with staged_file(args.out) as tmp_out:
        tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
