"""Fixtures of the service tests: an app factory, a model-free probe metric, and request helpers.

The served metrics are the model-free ``toxicity`` (a lexical model) and ``pii``, plus ``probe``, a
test metric registered for one test only (so the contract suite never sees it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

import metrics.base
from evalsuite.errors import ModelUnavailableError
from evalsuite.service.app import create_app
from evalsuite.service.scoring import ServedMetrics
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


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """``make_client(**settings)``: a started TestClient over a fresh app (toxicity and pii by default).

    The score cache is off unless asked for, so every request reaches the models.
    """
    with ExitStack() as stack:
        count = 0

        def make(*, raise_server_exceptions: bool = True, **overrides: Any) -> TestClient:
            nonlocal count
            count += 1
            options: dict[str, Any] = {
                "metrics": {"toxicity": {}, "pii": {}},
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
