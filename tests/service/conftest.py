"""Fixtures of the service tests: an app factory, model-free test metrics, a live server, request helpers.

The served metrics are the model-free ``toxicity`` (a lexical model) and ``pii``, plus ``probe`` and
``slow``, test metrics registered for one test only (so the contract suite never sees them).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
import uvicorn
from fastapi.testclient import TestClient

import metrics.base
from evalsuite.errors import ModelUnavailableError
from evalsuite.service.app import create_app
from evalsuite.service.scoring import ServedMetrics
from evalsuite.service.server import server_options
from evalsuite.service.settings import ServiceSettings
from metrics.base import Metric, Scores

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

MakeClient = Callable[..., TestClient]


class Probe(Metric):
    """The prediction's length in characters; ``boom`` raises, ``nan`` scores NaN, ``unavailable``
    raises :class:`ModelUnavailableError`."""

    name = "probe"
    fields = ("prediction",)
    score_names = ("chars",)

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        predictions = [record["prediction"] for record in records]
        if "boom" in predictions:
            raise RuntimeError("probe exploded (a bug in a metric)")
        if "unavailable" in predictions:
            raise ModelUnavailableError("probe model is not installed: pip install probe-model")
        return {"chars": [math.nan if text == "nan" else float(len(text)) for text in predictions]}


@pytest.fixture
def probe_metric(monkeypatch: pytest.MonkeyPatch) -> type[Probe]:
    """``probe`` registered for this test only."""
    monkeypatch.setitem(metrics.base._registered, "probe", Probe)
    return Probe


class Slow(Metric):
    """Pure-Python work of ``seconds_per_record`` for each prediction of 1,000 characters or more
    (none for shorter ones), scoring its length; it records when each record finished."""

    name = "slow"
    fields = ("prediction",)
    score_names = ("chars",)
    seconds_per_record: ClassVar[float] = 0.1
    finished: ClassVar[list[float]] = []  # time.monotonic() at the end of each slow record

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        chars = []
        for record in records:
            if len(record["prediction"]) >= 1000:
                time.sleep(self.seconds_per_record)
                self.finished.append(time.monotonic())
            chars.append(float(len(record["prediction"])))
        return {"chars": chars}


@pytest.fixture
def slow_metric(monkeypatch: pytest.MonkeyPatch) -> type[Slow]:
    """``slow`` registered for this test only."""
    monkeypatch.setitem(metrics.base._registered, "slow", Slow)
    monkeypatch.setattr(Slow, "finished", [])
    return Slow


@dataclass
class LiveServer:
    """A real uvicorn server, run as ``evalsuite serve`` runs it, on a loopback port."""

    host: str
    port: int
    server: uvicorn.Server

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """``live_server(**settings)``: the app under uvicorn with :func:`server_options`, in a thread."""
    started: list[tuple[LiveServer, threading.Thread]] = []

    def start(**overrides: Any) -> LiveServer:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        host, port = listener.getsockname()
        options: dict[str, Any] = {
            "metrics": {"pii": {}},
            "data_dir": tmp_path / f"live-{len(started)}",
            "cache": False,
            "host": host,
            "port": port,
            **overrides,
        }
        settings = ServiceSettings(**options)
        server = uvicorn.Server(uvicorn.Config(create_app(settings), **server_options(settings)))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        ServiceTools.wait_until(lambda: server.started)
        live = LiveServer(host, port, server)
        started.append((live, thread))
        return live

    yield start
    for live, thread in started:
        live.server.should_exit = True
        thread.join(10)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """``make_client(**settings)``: a started TestClient over a fresh app (lexical toxicity and pii by default).

    The score cache is off unless asked for, so every request reaches the models.
    """
    with ExitStack() as stack:
        count = 0

        def make(*, raise_server_exceptions: bool = True, **overrides: Any) -> TestClient:
            nonlocal count
            count += 1
            options: dict[str, Any] = {
                # The lexical toxicity model: fast, and its scores need no model weights.
                "metrics": {"toxicity": {"model": "profanity-check"}, "pii": {}},
                "data_dir": tmp_path / f"service-{count}",
                "cache": False,
                **overrides,
            }
            app = create_app(ServiceSettings(**options))
            client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
            return stack.enter_context(client)

        yield make


class ServiceTools:
    """Helpers of the service tests (a fixture, as conftest modules cannot be imported by name)."""

    @staticmethod
    def served(client: TestClient) -> ServedMetrics:
        served = client.app.state.served  # type: ignore[attr-defined]
        assert isinstance(served, ServedMetrics)
        return served

    @staticmethod
    def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``condition`` until it holds (fails the test after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout} s")
            time.sleep(0.002)

    @staticmethod
    @contextmanager
    def models_held(client: TestClient) -> Iterator[None]:
        """Hold the service's model lock, so requests queue in the micro-batchers until the block ends."""
        lock = ServiceTools.served(client).model_lock
        lock.acquire()
        try:
            yield
        finally:
            lock.release()

    @staticmethod
    def post_in_threads(
        client: TestClient, bodies: Sequence[dict[str, Any]], headers: Mapping[str, str] | None = None
    ) -> tuple[list[threading.Thread], list[Any]]:
        """Start one thread per body POSTing to /v1/score; responses land in the list, in body order."""
        responses: list[Any] = [None] * len(bodies)

        def post(index: int, body: dict[str, Any]) -> None:
            responses[index] = client.post("/v1/score", json=body, headers=dict(headers or {}))

        threads = [threading.Thread(target=post, args=(i, body)) for i, body in enumerate(bodies)]
        for thread in threads:
            thread.start()
        return threads, responses

    @staticmethod
    def join_all(threads: Sequence[threading.Thread], timeout: float = 30.0) -> None:
        for thread in threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a request thread did not finish"

    @staticmethod
    def error_of(response: Any) -> dict[str, Any]:
        """The ``error`` object of an error response, checking the shape every error must have."""
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "field"}, body
        assert "Traceback" not in response.text
        error: dict[str, Any] = body["error"]
        return error


@pytest.fixture
def svc() -> ServiceTools:
    return ServiceTools()
