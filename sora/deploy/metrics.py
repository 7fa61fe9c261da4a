"""The server's figures for ``GET /metrics`` (Prometheus text format): requests by route and status, errors,
latency, requests in flight, and the size and duration of every model call the micro-batcher makes.

Each app has its own registry, so that two servers in one process (tests) count apart.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sora.deploy.asgi import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """The counters and histograms, and the text ``/metrics`` answers with."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("sora_requests", "HTTP requests answered", ["route", "method", "status"], registry=r)
        self.errors = Counter(
            "sora_request_errors",
            "requests answered with an error: client (4xx) or server (5xx)",
            ["route", "kind"],
            registry=r,
        )
        self.latency = Histogram(
            "sora_request_seconds", "time from request to last byte", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.active = 0  # requests being answered now (the batcher reads it: is anyone else coming?)
        self.in_flight = Gauge("sora_requests_in_flight", "requests being answered now", registry=r)
        self.in_flight.set_function(lambda: self.active)
        self.batch_size = Histogram("sora_batch_size", "items per model call", buckets=BATCH_BUCKETS, registry=r)
        self.waiting = Gauge("sora_batch_waiting_items", "items queued for the next model call", registry=r)
        self.batch_seconds = Histogram(
            "sora_batch_seconds", "time of one model call on a batch", buckets=LATENCY_BUCKETS, registry=r
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(route, "client" if status < 500 else "server").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


ROUTES = {"/", "/healthz", "/metrics", "/docs", "/redoc", "/openapi.json"} | {
    f"/v1/{name}" for name in ("predict", "generate", "attention")
}


class MetricsMiddleware:
    """ASGI middleware: count every HTTP request by its route (``/v1/predict``; the page's files as ``/page``;
    any other URL as ``other``, so that a scan of random URLs cannot grow the label set), its status and its
    time to the last byte (a stream counts until it ends)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = route_of(scope["path"])
        start, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.active += 1
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.active -= 1
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - start)


def route_of(path: str) -> str:
    if path in ROUTES:
        return path
    return "/page" if path.startswith("/page/") else "other"
