"""Client against a fake server (httpx.MockTransport): retries, errors, jobs, results."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from evalsuite.client import Client, JobFailedError, ServiceError
from evalsuite.errors import ConfigError, EvalsuiteError

URL = "http://evalsuite.test"
Handler = Callable[[httpx.Request], httpx.Response]


def error(status: int, code: str, message: str, field: str | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, "field": field}}, headers=headers
    )


def job_info(job_id: str, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "state": state,
        "metrics": ["toxicity"],
        "on_error": "skip",
        "records_total": 3,
        "records_done": 3 if state == "succeeded" else 1,
        "errors": 0,
        "created_at": "2025-01-01T00:00:00.000+00:00",
        "updated_at": "2025-01-01T00:00:01.000+00:00",
        **extra,
    }


def multipart_parts(request: httpx.Request, body: bytes) -> list[bytes]:
    """The parts of a multipart body, without its random boundary."""
    boundary = request.headers["Content-Type"].split("boundary=")[1].encode()
    return body.split(b"--" + boundary)


class FakeServer:
    """Answers each request with the next scripted response (or handler) and records the requests."""

    def __init__(self, *script: httpx.Response | Exception | Handler) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connect(sleeps: list[float]) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(server: FakeServer, **options: Any) -> Client:
        client = Client(URL, transport=httpx.MockTransport(server), **options)
        client._sleep = sleeps.append  # no real waiting; the delays are what is checked
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


SCORED = {"scores": [{"id": "0", "toxicity_profanity": 0.1}], "summary": [], "errors": []}


def test_score_posts_the_request_body_and_returns_the_answer(connect: Callable[..., Client]) -> None:
    server = FakeServer(httpx.Response(200, json=SCORED))
    client = connect(server, api_key="s3cret")

    answer = client.score([{"prediction": "hi"}], metrics=["toxicity"], fields={"prediction": "output"})

    assert answer == SCORED
    request = server.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/score")
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert json.loads(server.bodies[0]) == {
        "records": [{"prediction": "hi"}],
        "metrics": ["toxicity"],
        "fields": {"prediction": "output"},
        "on_error": "fail",
    }


def test_429_and_503_are_retried_honouring_retry_after(
    connect: Callable[..., Client], sleeps: list[float]
) -> None:
    server = FakeServer(
        error(429, "rate_limited", "slow down", **{"Retry-After": "2"}),
        error(503, "timeout", "busy", **{"Retry-After": "0.5"}),
        httpx.Response(200, json=SCORED),
    )
    client = connect(server)

    assert client.score([{"prediction": "hi"}]) == SCORED
    assert len(server.requests) == 3
    assert sleeps == [2.0, 0.5]
    assert server.bodies[0] == server.bodies[2]  # the same request each time


def test_retry_after_may_be_an_http_date(connect: Callable[..., Client], sleeps: list[float]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    server = FakeServer(
        error(503, "timeout", "busy", **{"Retry-After": when}), httpx.Response(200, json=SCORED)
    )

    connect(server).score([{"prediction": "hi"}])

    assert len(sleeps) == 1
    assert 8 <= sleeps[0] <= 10


def test_gives_up_after_the_retries_with_the_last_error(
    connect: Callable[..., Client], sleeps: list[float]
) -> None:
    server = FakeServer(error(503, "timeout", "model queue full"))
    client = connect(server, retries=3, backoff=0.5)

    with pytest.raises(ServiceError) as caught:
        client.score([{"prediction": "hi"}])

    assert (caught.value.status, caught.value.code, caught.value.message) == (
        503,
        "timeout",
        "model queue full",
    )
    assert len(server.requests) == 4  # the first try and three retries
    # No Retry-After: exponential back-off with full jitter, below 0.5 * 2**attempt.
    assert len(sleeps) == 3
    assert all(0 <= delay <= 0.5 * 2**attempt for attempt, delay in enumerate(sleeps))


def test_other_client_errors_are_not_retried(connect: Callable[..., Client], sleeps: list[float]) -> None:
    server = FakeServer(
        error(422, "validation_error", "field 'prediction' is an empty string", "records[3].prediction")
    )
    client = connect(server)

    with pytest.raises(ServiceError) as caught:
        client.score([{"prediction": "hi"}])

    raised = caught.value
    assert isinstance(raised, EvalsuiteError)
    assert (raised.status, raised.code, raised.field) == (422, "validation_error", "records[3].prediction")
    assert raised.message == "field 'prediction' is an empty string"
    assert "records[3].prediction" in str(raised)
    assert len(server.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize(("status", "code"), [(401, "unauthorized"), (404, "not_found"), (500, "internal")])
def test_each_error_status_raises_at_once(connect: Callable[..., Client], status: int, code: str) -> None:
    server = FakeServer(error(status, code, "no"))
    with pytest.raises(ServiceError, match=code) as caught:
        connect(server).job("abc")
    assert caught.value.status == status
    assert len(server.requests) == 1


def test_an_error_without_a_json_body_is_still_readable(connect: Callable[..., Client]) -> None:
    server = FakeServer(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(ServiceError) as caught:
        connect(server).health()
    assert (caught.value.status, caught.value.code) == (502, "http_502")
    assert "Bad Gateway" in caught.value.message


def test_connection_errors_are_retried(connect: Callable[..., Client], sleeps: list[float]) -> None:
    server = FakeServer(
        httpx.ConnectError("refused"), httpx.ReadError("reset"), httpx.Response(200, json={"status": "ok"})
    )
    assert connect(server).health() == {"status": "ok"}
    assert len(server.requests) == 3
    assert len(sleeps) == 2


def test_unreachable_server_raises_service_error(connect: Callable[..., Client]) -> None:
    server = FakeServer(httpx.ConnectError("refused"))
    with pytest.raises(ServiceError, match="unreachable") as caught:
        connect(server, retries=2).health()
    assert caught.value.status is None
    assert len(server.requests) == 3


def test_job_upload_is_multipart_and_resent_whole(
    connect: Callable[..., Client], tmp_path: Path, sleeps: list[float]
) -> None:
    data = tmp_path / "answers.jsonl"
    data.write_text('{"id": "a", "prediction": "hello"}\n')
    accepted = job_info("j1", "queued")
    server = FakeServer(
        error(429, "rate_limited", "later", **{"Retry-After": "1"}), httpx.Response(202, json=accepted)
    )

    info = connect(server).submit_job(data, metrics=["toxicity", "pii"], on_error="fail")

    assert info == accepted
    assert len(server.requests) == 2
    first, second = (multipart_parts(r, b) for r, b in zip(server.requests, server.bodies, strict=True))
    assert first == second  # the whole file again, not the rest of a consumed stream
    request, body = server.requests[1], server.bodies[1]
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    assert b'filename="answers.jsonl"' in body
    assert b'{"id": "a", "prediction": "hello"}' in body
    assert b'name="metrics"\r\n\r\ntoxicity,pii' in body
    assert b'name="on_error"\r\n\r\nfail' in body


def test_job_upload_from_a_file_object(connect: Callable[..., Client]) -> None:
    import io

    server = FakeServer(error(503, "timeout", "busy"), httpx.Response(202, json=job_info("j1", "queued")))
    upload = io.BytesIO(b'{"prediction": "x"}\n')
    connect(server).submit_job(upload, filename="batch.jsonl")
    first, second = (multipart_parts(r, b) for r, b in zip(server.requests, server.bodies, strict=True))
    assert first == second  # the whole file again
    assert b'filename="batch.jsonl"' in server.bodies[1]
    with pytest.raises(ConfigError, match="filename="):
        connect(server).submit_job(io.BytesIO(b""))


def test_job_submission_is_not_resent_after_it_may_have_arrived(
    connect: Callable[..., Client], tmp_path: Path
) -> None:
    data = tmp_path / "answers.jsonl"
    data.write_text('{"prediction": "hello"}\n')
    server = FakeServer(httpx.ReadTimeout("no answer"), httpx.Response(202, json=job_info("j1", "queued")))

    with pytest.raises(ServiceError, match="unreachable"):
        connect(server).submit_job(data)

    assert len(server.requests) == 1  # a second POST could have created the job twice


def test_job_on_a_server_path_posts_json(connect: Callable[..., Client]) -> None:
    server = FakeServer(httpx.Response(202, json=job_info("j2", "queued")))

    connect(server).submit_job(server_path="/data/answers.parquet", metrics=["toxicity"])

    assert server.requests[0].url.path == "/v1/jobs"
    assert json.loads(server.bodies[0]) == {
        "path": "/data/answers.parquet",
        "metrics": ["toxicity"],
        "on_error": "skip",
    }
    with pytest.raises(ConfigError, match="exactly one"):
        connect(server).submit_job()


def test_wait_polls_until_the_job_succeeds(connect: Callable[..., Client], sleeps: list[float]) -> None:
    server = FakeServer(
        httpx.Response(200, json=job_info("j1", "queued")),
        httpx.Response(200, json=job_info("j1", "running")),
        httpx.Response(200, json=job_info("j1", "succeeded", summary=[{"score": "toxicity_profanity"}])),
    )

    info = connect(server).wait("j1", poll=0.25)

    assert info["state"] == "succeeded"
    assert [request.url.path for request in server.requests] == ["/v1/jobs/j1"] * 3
    assert sleeps == [0.25, 0.25]


def test_wait_raises_the_error_of_a_failed_job(connect: Callable[..., Client]) -> None:
    message = "answers.jsonl:6: missing required field 'prediction'"
    server = FakeServer(httpx.Response(200, json=job_info("j1", "failed", error=message)))

    with pytest.raises(JobFailedError, match="missing required field 'prediction'") as caught:
        connect(server).wait("j1")

    assert caught.value.job["error"] == message
    assert caught.value.code == "job_failed"


def test_wait_times_out(connect: Callable[..., Client]) -> None:
    server = FakeServer(httpx.Response(200, json=job_info("j1", "running")))
    with pytest.raises(TimeoutError, match="still running"):
        connect(server).wait("j1", poll=0.5, timeout=0.1)


NDJSON = b'{"id": "a", "toxicity_profanity": 0.1}\n\n{"id": "b", "toxicity_profanity": 0.9}\n'


def test_results_parse_the_ndjson(connect: Callable[..., Client]) -> None:
    server = FakeServer(httpx.Response(200, content=NDJSON, headers={"Content-Type": "application/x-ndjson"}))
    rows = connect(server).results("j1")
    assert rows == [{"id": "a", "toxicity_profanity": 0.1}, {"id": "b", "toxicity_profanity": 0.9}]
    assert server.requests[0].url.path == "/v1/jobs/j1/results"


def test_download_writes_the_file_whole_or_not_at_all(connect: Callable[..., Client], tmp_path: Path) -> None:
    server = FakeServer(
        httpx.Response(200, content=NDJSON), error(409, "conflict", "job j2 is running, not succeeded")
    )
    client = connect(server)

    target = client.download("j1", tmp_path / "out.jsonl")
    assert target.read_bytes() == NDJSON

    with pytest.raises(ServiceError, match="conflict") as caught:
        client.download("j2", tmp_path / "other.jsonl")
    assert caught.value.status == 409
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="retries"):
        Client(URL, retries=-1)
