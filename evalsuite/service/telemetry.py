"""Prometheus metrics of the service, in a registry of its own (two apps in one process never clash),
and its access log.

Exposed at ``GET /metrics``: requests by method, route and status; latency by route; records per
model batch by metric; requests waiting; errors by code; jobs by state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestTelemetry", "ServiceTelemetry"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# One label for every unknown path or method, so scanners cannot grow the set of time series.
_UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("evalsuite.service.access")


class ServiceTelemetry:
    """The service's Prometheus collectors and their rendering.

    >>> telemetry = ServiceTelemetry()
    >>> telemetry.errors.labels(code="timeout").inc()
    >>> b"evalsuite_errors_total" in telemetry.render()[0]
    True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "evalsuite_requests",
            "HTTP requests answered.",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "evalsuite_request_seconds", "Time to answer an HTTP request.", ["path"], registry=self.registry
        )
        self.batch_records = Histogram(
            "evalsuite_batch_records",
            "Records per model batch (micro-batches merge concurrent requests).",
            ["metric"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "evalsuite_queue_depth", "Scoring requests admitted and not yet answered.", registry=self.registry
        )
        self.errors = Counter(
            "evalsuite_errors", "Error responses, by error code.", ["code"], registry=self.registry
        )
        self.jobs = Gauge("evalsuite_jobs", "Jobs, by state.", ["state"], registry=self.registry)

    def watch_queue_depth(self, depth: Callable[[], float]) -> None:
        """Read the queue depth from ``depth`` at each scrape."""
        self.queue_depth.set_function(depth)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestTelemetry:
    """ASGI middleware counting, timing and logging requests; metrics labelled by route template.

    Labels use the matched route (``/v1/jobs/{job_id}``), never the raw path, so ids do not
    create new time series. An exception escaping the app is counted as a 500. The access log
    line (``evalsuite.service.access``, INFO) has the path without its query string, which may
    hold a credential, escaped as sent (no control characters can forge log lines).
    """

    def __init__(self, app: ASGIApp, telemetry: ServiceTelemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or _UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            elapsed = time.perf_counter() - started
            self.telemetry.requests.labels(method=method, path=path, status=str(status)).inc()
            self.telemetry.request_seconds.labels(path=path).observe(elapsed)
            _log_access(scope, status, elapsed)


def _log_access(scope: Scope, status: int, elapsed: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    # The path as sent (percent-encoded) when the server gives it; ASGI leaves the query out of
    # raw_path, cut it anyway. unicode_escape writes any control character as visible text.
    path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogatepass")
    access_log.info(
        '%s - "%s %s HTTP/%s" %d %.0fms',
        f"{client[0]}:{client[1]}" if client else "-",
        scope["method"] if scope["method"] in _METHODS else "OTHER",
        path.split(b"?", 1)[0].decode("latin-1").encode("unicode_escape").decode("ascii"),
        scope.get("http_version", "1.1"),
        status,
        elapsed * 1000,
    )
