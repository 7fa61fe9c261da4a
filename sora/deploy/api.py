"""The HTTP routes: /v1/predict, /v1/generate, /v1/attention (behind the API key when there is one), and the
open ones: /healthz, /metrics and the page at /."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from sora.deploy.limits import too_long
from sora.deploy.payload import attention_item, checked_text, input_kind, predictor_items, refuse_bad_items
from sora.deploy.schemas import (
    AttentionRequest,
    AttentionResponse,
    GenerateRequest,
    GenerateResponse,
    Health,
    PredictRequest,
    PredictResponse,
)
from sora.deploy.service import DONE, Service
from sora.errors import first_line

PAGE = Path(__file__).parent / "page"
log = logging.getLogger("sora.serve")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def v1_routes(service: Service) -> APIRouter:
    router = APIRouter(tags=["model"])
    settings = service.settings

    @router.post("/predict", response_model=PredictResponse, summary="Predict a batch of inputs")
    async def predict(request: PredictRequest) -> PredictResponse:
        """Labels with scores, token labels, transcripts, continuations, translations or answers: one per input,
        in order. Requests that arrive together share one model call (micro-batching)."""
        items = predictor_items(request.inputs, input_kind(service.predictor), settings)
        results = await service.predict(items)
        refuse_bad_items(results)
        return PredictResponse(predictions=results)

    @router.post(
        "/generate",
        response_model=GenerateResponse,
        summary="Generate text from a prompt (streamed as server-sent events with stream: true)",
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def generate(request: GenerateRequest):
        """Continue a prompt (a language model) or translate it (a seq2seq model), in one JSON answer or, with
        ``stream: true``, as server-sent events: ``data: {"text": PIECE}`` per piece, then ``data: [DONE]``."""
        _check_generation(service, request)
        options = request.model_dump(exclude={"prompt", "stream"})
        if not request.stream:
            return GenerateResponse(text=await service.generate_text(request.prompt, options))
        first, pieces = await service.start_stream(request.prompt, options)
        return StreamingResponse(_events(service, first, pieces), media_type="text/event-stream", headers=SSE_HEADERS)

    @router.get("/attention", response_model=AttentionResponse, summary="Attention of every head over a text")
    async def attention_of_text(text: str = Query(..., description="the text whose attention to show")):
        """Every layer's and head's attention pattern over the tokens of ``text``, each head with its importance
        from the model's analysis when the model folder has one (``analysis.json`` in it, or ``../analysis/``)."""
        return JSONResponse(await service.attention(checked_text(text, ["text"], "text", settings)))

    @router.post("/attention", response_model=AttentionResponse, summary="Attention of every head over an input")
    async def attention(request: AttentionRequest):
        """As GET /v1/attention, for texts too long for a URL, for images and WAVs (over their patches), and for a
        question with its context (its first window: the question's tokens beside the context's)."""
        return JSONResponse(await service.attention(attention_item(request, input_kind(service.predictor), settings)))

    return router


def _check_generation(service: Service, request: GenerateRequest) -> None:
    """400 for a model that does not generate; 422 for a prompt or a length over the server's limits."""
    if not service.generates:
        raise HTTPException(
            400,
            detail=f"this model is a {service.predictor.task} model: /v1/generate serves language models "
            "and seq2seq models; use /v1/predict",
        )
    settings = service.settings
    checked_text(request.prompt, ["prompt"], "prompt", settings)
    if request.max_new_tokens > settings.max_new_tokens:
        n, limit = request.max_new_tokens, settings.max_new_tokens
        raise too_long(["max_new_tokens"], "max_new_tokens", n, limit, "tokens", "--max-new-tokens")


async def _events(service: Service, piece, pieces):
    """Server-sent events, one per piece; an error after the first piece ends the stream with an ``error`` event
    (the status line has gone out by then)."""
    try:
        while piece is not DONE:
            yield f"data: {json.dumps({'text': piece})}\n\n"
            piece = await service.next_piece(pieces)
        yield "data: [DONE]\n\n"
    except Exception as e:  # the client hears of it, the log keeps the traceback, and the stream ends cleanly
        log.exception("generation failed after the stream started")
        yield f"event: error\ndata: {json.dumps({'error': first_line(e)})}\n\n"
    finally:
        service.close_stream(pieces)


def open_routes(service: Service) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=Health, tags=["server"], summary="The model served, and that it is up")
    async def healthz() -> dict:
        return service.health()

    @router.get("/metrics", tags=["server"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        """Requests by route and status, errors, latency, requests in flight, batch sizes and model-call times."""
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-cache"})

    return router
