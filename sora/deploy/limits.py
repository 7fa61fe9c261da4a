"""What the server accepts: its settings, the request body limit, and the messages a refused request gets.

Every limit is a setting with a default and a ``sora serve`` flag, and every refusal names the limit and the
flag that raises it, so that a client who hits one knows what happened and an operator knows what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from fastapi import HTTPException

from sora.deploy.asgi import ASGIApp, Message, Receive, Scope, Send
from sora.errors import SoraError

MiB = 2**20


@dataclass(frozen=True)
class ServeSettings:
    """How ``sora serve`` batches, what it accepts, and who may call it."""

    max_batch: int = 32  # items in one model call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_body_bytes: int = 8 * MiB  # a request body, in bytes (413 above)
    max_items: int = 64  # inputs in one /v1/predict request (422 above)
    max_chars: int = 10_000  # characters of one text input or prompt (422 above)
    max_item_bytes: int = 4 * MiB  # bytes of one image or WAV, decoded from base64 (422 above)
    max_new_tokens: int = 512  # the most /v1/generate may ask for (422 above)
    api_key: str | None = None  # when set, /v1/* needs it (Authorization: Bearer KEY or X-API-Key: KEY)
    model_name: str | None = None  # what /healthz and the page call the model (default: its folder)
    model_dir: Path | None = None  # where to look for the model's analysis (head importance)
    shutdown_timeout_s: float = 30.0  # on SIGTERM, how long requests in flight may take to finish

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                low = 0 if f.name in ("max_wait_ms", "shutdown_timeout_s") else 1
                if value < low:
                    raise SoraError(f"--{f.name.replace('_', '-')} must be at least {low}, got {value}")
        if self.api_key is not None and not self.api_key.strip():
            raise SoraError("--api-key is empty: give a key, or leave it out to serve without one")


def unprocessable(loc: list, msg: str, kind: str = "value_error") -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors: ``{"detail": [{"loc", "msg", "type"}]}``."""
    return HTTPException(422, detail=[{"loc": ["body", *loc], "msg": msg, "type": kind}])


def too_many_items(n: int, limit: int) -> HTTPException:
    return unprocessable(["inputs"], f"inputs: {n} items, over the limit of {limit} per request (--max-items)", "limit")


def too_long(loc: list, what: str, n: int, limit: int, unit: str, flag: str) -> HTTPException:
    """``inputs[3]: 12,001 characters, over the limit of 10,000 characters (--max-chars)``."""
    return unprocessable(loc, f"{what}: {n:,} {unit}, over the limit of {limit:,} {unit} ({flag})", "limit")


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before the app reads it (by its declared
    Content-Length, or by counting a chunked body as it arrives). The body is read here and replayed to the app:
    FastAPI reads every JSON body whole anyway."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send, f"request body is {int(declared):,} bytes, over")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return await self.app(scope, _replay([message], receive), send)
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(send, "request body is over")
            chunks.append(message)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, receive), send)

    async def _refuse(self, send: Send, what: str) -> None:
        body = f'{{"detail": "{what} the limit of {self.limit:,} bytes (--max-body-bytes)"}}'.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers + [(b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives back ``messages`` first, then waits on the real one (for a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
