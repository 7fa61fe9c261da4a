"""The HTTP service under load: micro-batching against one request per model call.

``sora serve`` runs in its own process on 127.0.0.1, once with ``--max-batch 32`` and once with ``--max-batch 1``
(the same model: all-MiniLM-L6-v2 with a classification head, as in bench/predict_vs_pipeline.py, or
``--model DIR``). For each, 32 concurrent clients (asyncio + aiohttp, in this process) send one Rotten Tomatoes
snippet per ``POST /v1/predict`` for ``--seconds``, then stop. Reported: requests per second, p50 and p99 latency,
failed requests, and the batch sizes the server's /metrics saw. The two settings alternate ``--repeats`` times.
Then the model alone, in this process, at batch 1 and 32: the server cannot gain more from batching than that.

    python bench/serve_load.py                  # writes bench/results/serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from sora.atomic import staged_file

sys.path.insert(0, str(Path(__file__).parent))
from predict_vs_pipeline import make_hf_classifier, snippets  # noqa: E402  (a sibling script)

from sora.interop.importer import import_to_folder  # noqa: E402

OUT = Path(__file__).parent / "results" / "serve_load.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, max_batch: int, threads: int, extra: list[str] = ()) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "sora", "serve", str(model), "--port", str(port), "--max-batch", str(max_batch)]
    cmd += list(extra)
    log = tempfile.TemporaryFile()  # the access log: a pipe nobody reads would fill and stall the server
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a starting server, not timing anything
    proc.kill()
    raise RuntimeError("server did not start within 300 s")


async def load(port: int, texts: list[str], clients: int, seconds: float) -> dict:
    """``clients`` coroutines, each posting one snippet at a time until ``seconds`` pass. aiohttp's client: httpx's
    async client costs about 3 ms of CPU a request here, which on 2 cores capped the server at ~300 requests/s."""
    latencies: list[float] = []
    failed = 0
    stop = time.perf_counter() + seconds

    async def client(k: int, http: aiohttp.ClientSession) -> None:
        nonlocal failed
        i = k
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                async with http.post("/v1/predict", json={"inputs": [texts[i % len(texts)]]}) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                failed += 1
            i += clients

    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector, timeout=timeout) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(k, http) for k in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "failed": failed,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
    }


def batch_sizes(port: int) -> dict:
    """Mean batch size from the server's Prometheus histogram (sum / count)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = re.search(r"^sora_batch_size_sum\S* (\S+)$", text, re.M)
    count = re.search(r"^sora_batch_size_count\S* (\S+)$", text, re.M)
    if not (total and count) or float(count.group(1)) == 0:
        return {}
    return {
        "batches": int(float(count.group(1))),
        "mean_batch": round(float(total.group(1)) / float(count.group(1)), 2),
    }


def measure(model: Path, max_batch: int, args, texts: list[str]) -> dict:
    port = free_port()
    proc = start_server(model, port, max_batch, args.threads, ["--max-wait-ms", str(args.max_wait_ms)])
    try:
        asyncio.run(load(port, texts, args.clients, 3))  # warm-up
        row = asyncio.run(load(port, texts, args.clients, args.seconds))
        row.update(batch_sizes(port))
        return row
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def model_bound(model: Path, texts: list[str], threads: int, seconds: float = 10) -> dict:
    """What the model alone gains from batching, the bound on what micro-batching can gain: the Predictor in this
    process, snippets in arrival order, one at a time and 32 at a time."""
    import torch

    from sora.deploy.predictor import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor.load(model)
    rates = {}
    for batch in (1, 32):
        done, began, i = 0, time.perf_counter(), 0
        while time.perf_counter() - began < seconds:
            chunk = [texts[(i + k) % len(texts)] for k in range(batch)]
            predictor.predict(chunk, batch_size=batch)
            done, i = done + batch, i + batch
        rates[f"batch_{batch}_per_s"] = round(done / (time.perf_counter() - began), 1)
    rates["ratio"] = round(rates["batch_32_per_s"] / rates["batch_1_per_s"], 2)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a model or export folder (default: MiniLM classifier)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-wait-ms", type=float, default=5, help="sora serve --max-wait-ms (its default: 5)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    texts = snippets(2000)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            make_hf_classifier(Path(tmp) / "hf")
            model = Path(tmp) / "sora"
            import_to_folder(Path(tmp) / "hf", model)
        runs: dict[str, list[dict]] = {"max_batch_32": [], "max_batch_1": []}
        for r in range(args.repeats):
            for name, max_batch in (("max_batch_32", 32), ("max_batch_1", 1)):
                row = measure(model, max_batch, args, texts)
                runs[name].append(row)
                print(f"repeat {r + 1} {name}: {row}", flush=True)
        bound = model_bound(model, texts, args.threads)  # after the servers: its torch threads stay in this process
        print(f"the model alone, batch 32 against batch 1: {bound}", flush=True)
    rate = {name: statistics.median(row["requests_per_s"] for row in rows) for name, rows in runs.items()}
    results = {
        "model": str(args.model or "all-MiniLM-L6-v2 + classification head"),
        "clients": args.clients,
        "seconds": args.seconds,
        "threads": args.threads,
        "max_wait_ms": args.max_wait_ms,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "machine": platform.machine(),
        "runs": runs,
        "throughput_ratio": round(rate["max_batch_32"] / rate["max_batch_1"], 2),
        "throughput_ratio_range": [
            round(a["requests_per_s"] / b["requests_per_s"], 2)
            for a, b in zip(runs["max_batch_32"], runs["max_batch_1"])
        ],
        "failed": sum(row["failed"] for rows in runs.values() for row in rows),
        "model_alone": bound,
    }
    with staged_file(args.out) as tmp_out:
        tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"micro-batching {results['throughput_ratio']}x the throughput of batch 1; failed {results['failed']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
