"""``sora serve``: a model folder or an ONNX export behind HTTP, with the particle explorer page at /."""

from __future__ import annotations

from pathlib import Path

import typer

from sora.cli.app import app
from sora.deploy.limits import ServeSettings
from sora.deploy.server import serve

DEFAULTS = ServeSettings()


@app.command("serve")
def serve_command(
    model: Path = typer.Argument(..., help="a model folder, or an export folder written by sora export"),
    host: str = typer.Option("127.0.0.1", "--host", help="the address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", help="the port (0: a free one, printed)"),
    backend: str = typer.Option("auto", "--backend", help="auto (the faster, measured at load), torch or onnxruntime"),
    max_batch: int = typer.Option(DEFAULTS.max_batch, "--max-batch", help="most items in one model call"),
    max_wait_ms: float = typer.Option(
        DEFAULTS.max_wait_ms, "--max-wait-ms", help="how long a request waits for others to share its model call"
    ),
    api_key: str = typer.Option(
        None,
        "--api-key",
        envvar="SORA_API_KEY",
        show_envvar=True,
        help="require this key on /v1/* (Authorization: Bearer KEY or X-API-Key: KEY)",
    ),
    max_body_bytes: int = typer.Option(
        DEFAULTS.max_body_bytes, "--max-body-bytes", help="largest request body in bytes (413 above)"
    ),
    max_items: int = typer.Option(DEFAULTS.max_items, "--max-items", help="most inputs per request (422 above)"),
    max_chars: int = typer.Option(
        DEFAULTS.max_chars, "--max-chars", help="longest text or prompt in characters (422 above)"
    ),
    max_item_bytes: int = typer.Option(
        DEFAULTS.max_item_bytes, "--max-item-bytes", help="largest image or WAV in bytes, decoded (422 above)"
    ),
    max_new_tokens: int = typer.Option(
        DEFAULTS.max_new_tokens, "--max-new-tokens", help="most tokens one /v1/generate may ask for (422 above)"
    ),
) -> None:
    """Serve a model: /v1/predict (micro-batched), /v1/generate (streamed), /v1/attention, /healthz, /metrics,
    the API docs at /docs and the particle explorer page at /. Stops on Ctrl+C or SIGTERM, finishing the
    requests in flight."""
    settings = ServeSettings(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_body_bytes=max_body_bytes,
        max_items=max_items,
        max_chars=max_chars,
        max_item_bytes=max_item_bytes,
        max_new_tokens=max_new_tokens,
        api_key=api_key,
    )
    serve(model, host, port, backend=backend, settings=settings, say=typer.echo)
