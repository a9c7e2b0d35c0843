"""A small HTTP client for ``evalsuite serve``: score records, submit file jobs, fetch results.

Transient refusals (429, 503) and connection failures are retried with exponential back-off and
jitter, honouring ``Retry-After``; every other error is raised at once as :class:`ServiceError`
carrying the server's structured error::

    with Client("http://127.0.0.1:8080", api_key="...") as client:
        client.score([{"prediction": "Paris.", "references": ["Paris"]}], metrics=["bertscore"])
        job = client.submit_job("answers.jsonl", metrics=["toxicity"])
        client.wait(job["id"])
        rows = client.results(job["id"])
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from evalsuite._validation import invalid
from evalsuite.errors import ConfigError, EvalsuiteError, MissingDependencyError
from evalsuite.retry import retry_delay

try:
    import httpx
except ImportError as missing:  # pragma: no cover - httpx ships with the serve extra
    raise MissingDependencyError("evalsuite.Client needs httpx: pip install 'evalsuite[serve]'") from missing

RETRY_STATUSES = frozenset({429, 503})
MAX_BACKOFF_S = 30.0
# Errors raised before the request reached the server: safe to retry even a POST that creates a job.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ServiceError(EvalsuiteError, RuntimeError):
    """An error answer from the service (or no answer: ``status`` is ``None``).

    ``code`` is the server's error code (``validation_error``, ``rate_limited``, ...), ``field`` the
    input it is about (``records[3].prediction``) when it names one.
    """

    def __init__(self, status: int | None, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" [{field}]" if field else ""
        super().__init__(f"{status or 'no response'} {code}{where}: {message}")


class JobFailedError(ServiceError):
    """A job finished in state ``failed``; ``job`` is its last JobInfo."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        self.job = dict(job)
        super().__init__(200, "job_failed", f"job {job.get('id')} failed: {job.get('error')}")


class Client:
    """A client of one evalsuite service; thread-safe (one httpx connection pool).

    >>> with Client("http://127.0.0.1:8080") as client:  # doctest: +SKIP
    ...     client.score([{"prediction": "hi"}], metrics=["toxicity"])["summary"]
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise invalid("retries", "an integer >= 0", retries)
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not backoff >= 0:
            raise invalid("backoff", "a number >= 0", backoff)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)
        self._sleep: Callable[[float], None] = time.sleep  # replaced in tests

    # -- the API --------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /healthz``: the status and the served metric names."""
        return self._json("GET", "/healthz")

    def metrics(self) -> list[dict[str, Any]]:
        """The served metrics with their columns, fields and config hashes."""
        metrics: list[dict[str, Any]] = self._json("GET", "/v1/metrics")["metrics"]
        return metrics

    def score(
        self,
        records: Sequence[Mapping[str, Any]],
        metrics: Sequence[str] | None = None,
        fields: Mapping[str, str] | None = None,
        on_error: str = "fail",
    ) -> dict[str, Any]:
        """Score records synchronously: ``{"scores", "summary", "errors", "config_hashes", "model_hashes"}``.

        ``on_error="fail"``: one invalid record (a duplicate id included) raises :class:`ServiceError`
        with ``field`` naming it (``records[3].prediction``). ``"skip"``: it is left out of ``scores``
        and listed in ``errors`` as the error row every run writes: ``{"index": 3, "location":
        "records[3]", "field": "prediction", "reason": "...", "record": {...}}``.
        """
        body = {
            "records": list(records),
            "metrics": list(metrics) if metrics is not None else None,
            "fields": dict(fields) if fields is not None else None,
            "on_error": on_error,
        }
        # Scoring has no side effects on the server, so it is safe to resend after any failure.
        return self._json("POST", "/v1/score", json=body, idempotent=True)

    def submit_job(
        self,
        path_or_file: str | os.PathLike[str] | IO[bytes] | None = None,
        metrics: Sequence[str] | None = None,
        on_error: str = "skip",
        fields: Mapping[str, str] | None = None,
        *,
        server_path: str | None = None,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Submit a file job: upload a local file, or name a file on the server (``server_path=``).

        Returns the job's JobInfo (``id``, ``state``, ...). ``filename`` names an uploaded file
        object that has no name of its own; its extension tells the server the format.
        """
        if (path_or_file is None) == (server_path is None):
            raise ConfigError("submit_job needs exactly one of a local file or server_path=")
        if path_or_file is None:
            body: dict[str, Any] = {"path": server_path, "on_error": on_error}
            if metrics is not None:
                body["metrics"] = list(metrics)
            if fields is not None:
                body["fields"] = dict(fields)
            return self._json("POST", "/v1/jobs", json=body, idempotent=False)
        form: dict[str, str] = {"on_error": on_error}
        if metrics is not None:
            form["metrics"] = ",".join(metrics)
        if fields is not None:
            form["fields"] = json.dumps(dict(fields))
        with _upload(path_or_file, filename) as (name, upload):

            def build() -> httpx.Request:
                return self._http.build_request("POST", "/v1/jobs", data=form, files={"file": (name, upload)})

            return _decode(self._send(build, idempotent=False))

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's current JobInfo."""
        return self._json("GET", f"/v1/jobs/{job_id}")

    def wait(self, job_id: str, poll: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the job finishes; its JobInfo, or :class:`JobFailedError` if it failed.

        Raises :class:`TimeoutError` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info["state"] == "succeeded":
                return info
            if info["state"] == "failed":
                raise JobFailedError(info)
            if deadline is not None and time.monotonic() + poll > deadline:
                raise TimeoutError(f"job {job_id} still {info['state']} after {timeout}s")
            self._sleep(poll)

    def results(self, job_id: str) -> list[dict[str, Any]]:
        """The scored records of a finished job (its NDJSON, parsed)."""
        response = self._send(lambda: self._http.build_request("GET", f"/v1/jobs/{job_id}/results"))
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def download(self, job_id: str, to: str | os.PathLike[str]) -> Path:
        """Stream a finished job's NDJSON into ``to`` (written whole or not at all)."""
        target = Path(to)
        partial = target.with_name(target.name + ".part")
        response = self._send(
            lambda: self._http.build_request("GET", f"/v1/jobs/{job_id}/results"), stream=True
        )
        try:
            with partial.open("wb") as sink:
                for block in response.iter_bytes():
                    sink.write(block)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        os.replace(partial, target)
        return target

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- sending with retries -------------------------------------------------------------------
    def _json(self, method: str, path: str, *, idempotent: bool = True, **options: Any) -> dict[str, Any]:
        return _decode(
            self._send(lambda: self._http.build_request(method, path, **options), idempotent=idempotent)
        )

    def _send(
        self, build: Callable[[], httpx.Request], *, idempotent: bool = True, stream: bool = False
    ) -> httpx.Response:
        """Send, retrying 429/503 and transport failures; a non-2xx answer raises ServiceError."""
        attempt = 0
        while True:
            try:
                response = self._http.send(build(), stream=stream)
            except httpx.TransportError as error:
                # A request that may have reached the server is not resent unless it is idempotent:
                # a resent job submission could create the job twice.
                if attempt >= self.retries or not (idempotent or isinstance(error, _NOT_SENT)):
                    raise ServiceError(None, "unreachable", f"{type(error).__name__}: {error}") from error
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.is_success:
                return response
            if stream:
                response.read()
            response.close()
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                self._sleep(self._delay(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            raise _service_error(response)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        return retry_delay(attempt, self.backoff, retry_after, MAX_BACKOFF_S)


@contextmanager
def _upload(
    path_or_file: str | os.PathLike[str] | IO[bytes], filename: str | None
) -> Iterator[tuple[str, IO[bytes]]]:
    """The upload's name and its bytes (httpx seeks a file back to 0 for each retry)."""
    if isinstance(path_or_file, str | os.PathLike):
        path = Path(path_or_file)
        if not path.is_file():
            raise ConfigError(f"cannot upload {os.fspath(path)!r}: no such file")
        with path.open("rb") as handle:
            yield filename or path.name, handle
        return
    name = filename or Path(str(getattr(path_or_file, "name", ""))).name
    if not name:
        raise ConfigError("an uploaded file object needs filename= (its extension names the format)")
    yield name, path_or_file


def _decode(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise ServiceError(
            response.status_code, "bad_response", f"expected JSON, got {response.text[:200]!r}"
        ) from error
    if not isinstance(body, dict):
        raise ServiceError(response.status_code, "bad_response", f"expected a JSON object, got {body!r:.200}")
    return body


def _service_error(response: httpx.Response) -> ServiceError:
    """The server's structured error; a bare body (a proxy's HTML page) still makes a readable one."""
    try:
        error = response.json()["error"]
        return ServiceError(
            response.status_code, str(error["code"]), str(error["message"]), error.get("field")
        )
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:500] or response.reason_phrase
        return ServiceError(response.status_code, f"http_{response.status_code}", text)
