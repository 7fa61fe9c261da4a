"""``sora serve``: a model behind HTTP (FastAPI + uvicorn).

``create_app(predictor, settings)`` builds the app around any object with the Predictor's methods (tests use
small fakes); ``serve(model_path)`` loads the Predictor and runs it with uvicorn on 127.0.0.1 unless told
otherwise. On SIGTERM (or Ctrl+C) uvicorn stops accepting connections, lets the requests in flight finish (up to
``shutdown_timeout_s``), then the app stops its batcher and model thread.
"""

from __future__ import annotations

import ipaddress
import socket
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from sora.deploy.api import PAGE, open_routes, v1_routes
from sora.deploy.auth import require_key
from sora.deploy.batcher import ModelWorker
from sora.deploy.limits import BodyLimit, ServeSettings
from sora.deploy.metrics import MetricsMiddleware
from sora.deploy.predictor import Predictor
from sora.deploy.service import Service
from sora.errors import SoraError, first_line

DESCRIPTION = """Predictions, generation and attention from a Sora model.

* `POST /v1/predict`: labels with scores (or token labels, transcripts, continuations, translations), micro-batched
* `POST /v1/generate`: a prompt's continuation, streamed as server-sent events with `stream: true`
* `GET|POST /v1/attention`: every head's attention over a text, with its importance from the model's analysis
* `GET /healthz`, `GET /metrics` (Prometheus), and the particle explorer page at `/`
"""


def create_app(predictor, settings: ServeSettings | None = None, worker: ModelWorker | None = None) -> FastAPI:
    """The app serving ``predictor``; ``app.state.service`` holds its batcher, model thread and metrics.
    ``worker``: the model thread ``predictor`` was loaded on (see ``ModelWorker``)."""
    service = Service(predictor, settings or ServeSettings(), worker)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    # The OpenAPI pages (/docs, /redoc) with Swagger UI and ReDoc served by the app: no CDN, so they work offline.
    app = FastAPIOffline(title=f"Sora: {service.name}", description=DESCRIPTION, version="1", lifespan=lifespan)
    app.state.service = service
    guard = [Depends(require_key(service.settings.api_key))] if service.settings.api_key else []
    app.include_router(v1_routes(service), prefix="/v1", dependencies=guard)
    app.include_router(open_routes(service))
    app.mount("/page", StaticFiles(directory=PAGE), name="page")
    app.add_exception_handler(SoraError, _bad_input)
    app.add_exception_handler(Exception, _server_error)
    app.add_middleware(BodyLimit, limit=service.settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)  # outermost: sees all
    return app


async def _bad_input(request: Request, e: SoraError) -> JSONResponse:
    """The Predictor refused the input (an empty prompt, a text it cannot tokenize): 422 with its one line."""
    return JSONResponse({"detail": str(e)}, status_code=422)


async def _server_error(request: Request, e: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"the server failed on this request: {first_line(e)}"}, status_code=500)


def serve(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    backend: str = "auto",
    settings: ServeSettings | None = None,
    log_level: str = "info",
    say: Callable[[str], None] = print,
) -> None:
    """Load the model at ``model_path`` and serve it until SIGTERM or Ctrl+C; says the URL once listening."""
    settings = settings or ServeSettings()
    settings = replace(
        settings, model_name=settings.model_name or str(model_path), model_dir=settings.model_dir or Path(model_path)
    )
    worker = ModelWorker()  # loads the model, and runs it: one thread runs torch (see ModelWorker)
    predictor = worker.run_now(Predictor.load, model_path, backend=backend)
    app = create_app(predictor, settings, worker)
    sock = bind(host, port)
    url = url_of(sock)
    say(f"serving {settings.model_name} ({predictor.task}, {predictor.input}, {predictor.backend}) at {url}")
    say(f"  the page: {url}/   API docs: {url}/docs   metrics: {url}/metrics")
    if settings.api_key:
        say("  /v1/* needs the API key: Authorization: Bearer KEY or X-API-Key: KEY")
    elif not _loopback(host):
        say(f"  note: listening on {host} without an API key: anyone who reaches this machine can use the model")
    run_app(app, sock, shutdown_timeout_s=settings.shutdown_timeout_s, log_level=log_level)


def run_app(app: FastAPI, sock: socket.socket, *, shutdown_timeout_s: float = 30.0, log_level: str = "info") -> None:
    """uvicorn on a bound socket, with its graceful shutdown. After a SIGTERM uvicorn raises the signal again
    once done, so the process ends as one killed by SIGTERM (what a supervisor expects)."""
    config = uvicorn.Config(
        app, log_level=log_level, timeout_graceful_shutdown=shutdown_timeout_s, lifespan="on", access_log=True
    )
    uvicorn.Server(config).run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it every answer
    # waits on Nagle's algorithm and a delayed ACK (measured: 44 ms a request instead of under 1 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SoraError(f"cannot listen on {host}:{port}: {e.strerror or first_line(e)}") from None
    except (OverflowError, TypeError):
        sock.close()
        raise SoraError(f"--port must be 0-65535, got {port}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
