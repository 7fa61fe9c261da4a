"""What the server tests share: a server run for real (uvicorn on 127.0.0.1, a free port, in a thread), a fake
predictor with the Predictor's methods, and tiny real model folders (a classifier with an analysis beside it,
laid out as ``sora run`` lays out a run, and a character LM)."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import torch
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sora.data import prepare_data
from sora.deploy.server import bind, url_of
from sora.errors import SoraError
from tests.deploy.tiny_folders import char_lm
from tests.helpers import save_tiny, write_reviews

DEADLINE_S = 30  # the most any wait here lasts; a passing test waits milliseconds


@contextmanager
def running(app):
    """``app`` served by uvicorn on 127.0.0.1 (a free port) in a thread; yields its URL, stops it at the end."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = url_of(sock)
    try:
        wait_until(lambda: server.started, "the server to start")
        yield url
    finally:
        server.should_exit = True
        thread.join(DEADLINE_S)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


def wait_until(condition, what: str, deadline_s: float = DEADLINE_S):
    """Poll ``condition`` until it holds (returning its value), failing after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"gave up waiting for {what} after {deadline_s} s")


def metric(url: str, name: str, **labels) -> float:
    """One sample of /metrics, read with Prometheus' own parser (0 when absent)."""
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


class FakePredictor:
    """The Predictor's methods, answering at once from the input itself; ``batches`` records each call's size."""

    backend = "fake"

    def __init__(self, task: str = "classification", input: str = "text"):
        self.task, self.input = task, input
        self.labels = ["neg", "pos"] if task == "classification" else None
        self.batches: list[int] = []

    def predict(self, items, batch_size=32, errors="raise"):
        self.batches.append(len(items))
        return [self._one(x) for x in items]

    def _one(self, x) -> dict:
        if isinstance(x, bytes):
            return {"label": "pos", "score": 1.0, "scores": {"neg": 0.0, "pos": 1.0}, "bytes": len(x)}
        if not x.strip():
            return {"error": "empty text"}
        p = 0.9 if "good" in x else 0.2
        return {"label": "pos" if p > 0.5 else "neg", "score": max(p, 1 - p), "scores": {"neg": 1 - p, "pos": p}}

    def generate(self, prompt, max_new_tokens=50, temperature=0.8, top_k=None, top_p=None, seed=None):
        if not prompt.strip():
            raise SoraError("the prompt is empty")
        for i in range(max_new_tokens):
            yield f" {prompt.split()[-1]}{i}"

    def attention(self, item) -> dict:
        tokens = item.split()
        T = len(tokens)
        pattern = [[1 / (i + 1) if j <= i else 0.0 for j in range(T)] for i in range(T)]  # (T, T), causal, uniform
        return {
            "tokens": tokens,
            "layers": [
                {"layer": i, "heads": [{"name": f"layers.{i}.attn.head.{h}", "pattern": pattern} for h in range(2)]}
                for i in range(2)
            ],
        }


class Holding:
    """A predictor (fake or real) whose first predict call waits until ``release`` is set, and which notes
    whether two model calls ever ran at once."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.entered, self.release = threading.Event(), threading.Event()
        self.active, self.overlapped = 0, False

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def predict(self, items, **options):
        self.active += 1
        self.overlapped |= self.active > 1
        try:
            if not self.entered.is_set():
                self.entered.set()
                assert self.release.wait(DEADLINE_S), "the test never released the held call"
            return self.predictor.predict(items, **options)
        finally:
            self.active -= 1


def tiny_classifier_run(root: Path) -> Path:
    """``root/run/model``: an untrained tiny review classifier (labels fresh/rotten) with its tokenizer, and
    ``root/run/analysis/analysis.json`` giving its heads importance, as ``sora run`` lays them out."""
    csv = write_reviews(
        root / "reviews.csv", {"fresh": ["good", "great", "fine"], "rotten": ["bad", "dull", "poor"]}, 60, filler=2
    )
    config = {
        "source": str(csv),
        "split": {"validation": 0.25, "test": 0.25},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 60, "min_frequency": 1},
    }
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = save_tiny(root / "run" / "model", prepare_data(config))
    heads = [
        {"name": f"layers.{i}.attn.head.{h}", "gradient": round(1.0 - 0.1 * (4 * i + h), 3), "type": "broad"}
        for i in range(2)
        for h in range(4)
    ]
    (root / "run" / "analysis").mkdir()
    (root / "run" / "analysis" / "analysis.json").write_text(json.dumps({"heads": heads}))
    return model


def tiny_lm(root: Path) -> Path:
    """An untrained tiny character LM with its tokenizer."""
    return char_lm(root)
