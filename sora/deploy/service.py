"""What the server does with a model, apart from HTTP: predictions through the micro-batcher, generation one
piece at a time, attention with each head's importance. Every model call runs on the one model thread, so that
the event loop stays free and predictions, generation steps and attention never run on the model at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sora.deploy.batcher import MicroBatcher, ModelWorker
from sora.deploy.importance import find_analysis, head_importance
from sora.deploy.limits import ServeSettings
from sora.deploy.metrics import ServerMetrics

GENERATING_TASKS = ("lm", "seq2seq")
DONE = object()  # what next() gives when a generation has no more pieces


class Service:
    def __init__(self, predictor, settings: ServeSettings, worker: ModelWorker | None = None) -> None:
        self.predictor, self.settings = predictor, settings
        self.metrics = ServerMetrics()
        self.worker = worker or ModelWorker()  # the thread that loaded the model, when it was loaded on one
        self.batcher = MicroBatcher(
            self._predict_batch,
            self.worker,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            on_batch=self.metrics.observe_batch,
            in_flight=lambda: self.metrics.active,
        )
        self.metrics.waiting.set_function(lambda: self.batcher.waiting)
        model_dir = settings.model_dir or _folder_of(predictor)
        self.heads, self.importance_source = head_importance(find_analysis(model_dir))
        self.name = settings.model_name or (str(model_dir) if model_dir else "model")

    async def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.worker.close()

    def _predict_batch(self, items: list) -> list[dict]:
        return self.predictor.predict(items, batch_size=self.settings.max_batch, errors="return")

    async def predict(self, items: list) -> list[dict]:
        """One result per item (a dict; ``{"error": ...}`` for an item the Predictor could not read)."""
        return await self.batcher.submit(items)

    @property
    def generates(self) -> bool:
        return self.predictor.task in GENERATING_TASKS

    async def generate_text(self, prompt: str, options: dict[str, Any]) -> str:
        return await self.worker.call(lambda: "".join(self.predictor.generate(prompt, **options)))

    async def start_stream(self, prompt: str, options: dict[str, Any]) -> tuple[Any, Iterator[str]]:
        """The first piece (or DONE) and the iterator of the rest: bad input fails here, before any byte is sent."""
        pieces = await self.worker.call(lambda: iter(self.predictor.generate(prompt, **options)))
        try:
            return await self.next_piece(pieces), pieces
        except BaseException:
            self.close_stream(pieces)
            raise

    async def next_piece(self, pieces: Iterator[str]):
        return await self.worker.call(next, pieces, DONE)

    def close_stream(self, pieces: Iterator[str]) -> None:
        """Free a generation the client left (its KV cache), on the model thread, without waiting."""
        close = getattr(pieces, "close", None)
        if close is not None:
            self.worker.post(close)

    async def attention(self, item) -> dict[str, Any]:
        """The Predictor's attention, rounded to 4 decimals (a smaller answer, the same picture), each head with
        its importance, rank and type from the analysis when there is one."""
        found = await self.worker.call(self.predictor.attention, item)
        layers = []
        for layer in found["layers"]:
            heads = []
            for head in layer["heads"]:
                known = self.heads.get(head["name"], {})
                pattern = np.round(np.asarray(head["pattern"], dtype=np.float64), 4).tolist()
                heads.append({"name": head["name"], "pattern": pattern, **{k: known.get(k) for k in HEAD_FACTS}})
            layers.append({"layer": layer["layer"], "heads": heads})
        return {"tokens": list(found["tokens"]), "layers": layers, "importance": self.importance_source}

    def health(self) -> dict[str, Any]:
        p, s = self.predictor, self.settings
        return {
            "status": "ok",
            "model": self.name,
            "task": p.task,
            "input": p.input,
            "backend": p.backend,
            "labels": list(p.labels) if p.labels is not None else None,
            "generate": self.generates,
            "api_key_required": s.api_key is not None,
            "analysis": bool(self.heads),
            "limits": {
                "max_items": s.max_items,
                "max_chars": s.max_chars,
                "max_item_bytes": s.max_item_bytes,
                "max_body_bytes": s.max_body_bytes,
                "max_new_tokens": s.max_new_tokens,
            },
        }


HEAD_FACTS = ("importance", "rank", "type")


def _folder_of(predictor) -> Path | None:
    """The folder a Predictor was loaded from, when it says (``path`` or ``folder``)."""
    for attr in ("path", "folder", "model_dir"):
        value = getattr(predictor, attr, None)
        if isinstance(value, (str, Path)):
            return Path(value)
    return None
