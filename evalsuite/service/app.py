"""The HTTP API of the scoring service (FastAPI): ``create_app(settings)`` builds it.

Models are loaded and warmed when the app is created, so the first request is not slow and a bad
configuration fails before the server binds. Every error response has the body
``{"error": {"code", "message", "field"}}``, never a stack trace; the traceback of an unexpected
error goes to the server log.

    app = create_app(ServiceSettings(metrics={"toxicity": {}, "pii": {}}))
    uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, TypeVar, cast

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import evalsuite
from evalsuite.errors import ConfigError, EvalsuiteError, InputError, UnknownMetricError
from evalsuite.runtime.microbatch import MicroBatcherClosedError
from evalsuite.service.auth import ApiKeys
from evalsuite.service.jobs import JobInfo, JobManager, PayloadTooLargeError
from evalsuite.service.schemas import (
    ErrorBody,
    HealthResponse,
    JobPathRequest,
    MetricsResponse,
    ScoreRequest,
    ScoreResponse,
)
from evalsuite.service.scoring import ServedMetrics, ServiceOverloadedError, check_field_mapping
from evalsuite.service.settings import ServiceSettings
from evalsuite.service.telemetry import RequestTelemetry, ServiceTelemetry

__all__ = ["ApiError", "create_app"]

logger = logging.getLogger("evalsuite.service")

JOBS_PATH = "/v1/jobs"
RETRY_AFTER_OVERLOADED_S = 1
RETRY_AFTER_TIMEOUT_S = 5
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 422, 429, 500, 503)
}


class ApiError(HTTPException):
    """An error response with its status, code, message and the request field at fault.

    An :class:`HTTPException`, so FastAPI passes it through untouched when it is raised while the
    body is read (the body size limit does that).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, dict(headers or {}))
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


# -- app ------------------------------------------------------------------------------------------
def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The service app: loads and warms the served metrics now, starts the job worker with the app.

    Raises :class:`~evalsuite.errors.EvalsuiteError` subclasses for a bad configuration (unknown
    metric, unreadable keys file, model not available).
    """
    settings = settings or ServiceSettings()
    api_keys = ApiKeys.from_file(settings.api_keys_file) if settings.api_keys_file else None
    telemetry = ServiceTelemetry()
    served = ServedMetrics(
        settings, on_batch=lambda name, records: telemetry.batch_records.labels(metric=name).observe(records)
    )
    try:
        if settings.warm_up:
            served.warm_up()
        jobs = JobManager(
            settings.data_dir, served.scorer_for, served.model_lock, allowed_roots=settings.allowed_paths
        )
    except BaseException:
        served.close()
        raise
    telemetry.watch_queue_depth(lambda: served.in_flight)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every admitted request gets a thread; admission (429) bounds how many there are.
        app.state.score_limiter = anyio.CapacityLimiter(settings.max_pending_requests)
        jobs.start()
        logger.info("serving metrics %s; jobs in %s", ", ".join(served.names), settings.data_dir)
        if api_keys is None:
            logger.warning("no API keys file (--api-keys): anyone who can reach this server can use it")
        try:
            yield
        finally:
            jobs.stop()
            served.close()

    app = FastAPI(
        title="evalsuite",
        version=evalsuite.__version__,
        summary="Score LLM outputs with small models.",
        lifespan=lifespan,
    )
    app.state.telemetry = telemetry
    app.state.served = served  # for introspection: batcher stats, the model lock
    app.state.jobs = jobs
    app.state.score_limiter = None
    _add_exception_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        limit_for_path=lambda path: (
            settings.max_upload_bytes if path == JOBS_PATH else settings.max_body_bytes
        ),
        telemetry=telemetry,
    )
    app.add_middleware(RequestTelemetry, telemetry=telemetry)  # added last: outermost, sees every response

    @app.get("/healthz", response_model=HealthResponse, tags=["service"])
    def health() -> HealthResponse:
        """Liveness; needs no API key."""
        return HealthResponse(metrics=served.names)

    app.include_router(_api_routes(settings, served, jobs, telemetry, _key_checker(api_keys)))
    return app


def _api_routes(
    settings: ServiceSettings,
    served: ServedMetrics,
    jobs: JobManager,
    telemetry: ServiceTelemetry,
    require_key: Callable[..., None],
) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_key)], responses=_ERROR_RESPONSES)

    @router.get("/v1/metrics", response_model=MetricsResponse, tags=["scoring"])
    def list_served_metrics() -> dict[str, Any]:
        """The served metrics: columns, fields they read, direction, config and its hash."""
        return {"metrics": served.describe()}

    @router.post("/v1/score", response_model=ScoreResponse, tags=["scoring"])
    async def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
        """Score records now. Concurrent requests are merged into shared model batches."""
        work = partial(
            served.score, body.records, metrics=body.metrics, fields=body.fields, on_error=body.on_error
        )
        with served.admit():
            return await anyio.to_thread.run_sync(work, limiter=request.app.state.score_limiter)

    @router.post(
        JOBS_PATH,
        status_code=202,
        response_model=JobInfo,
        tags=["jobs"],
        responses={413: {"model": ErrorBody}},
        openapi_extra={"requestBody": _JOB_REQUEST_BODY},
    )
    async def submit_job(request: Request, response: Response) -> JobInfo:
        """Queue a file for scoring: a multipart upload, or a JSON ``{"path": ...}`` on the server."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            async with request.form(max_files=1, max_fields=8) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise InputError("the multipart body needs a 'file' part", field="file")
                metrics = _form_text(form.get("metrics"))
                names = served.resolve([name.strip() for name in metrics.split(",")] if metrics else None)
                submit = partial(
                    jobs.submit_upload,
                    upload.filename or "upload",
                    upload.file,
                    metrics=names,
                    on_error=_form_on_error(form.get("on_error")),
                    fields=_form_fields(form.get("fields")),
                    max_bytes=settings.max_upload_bytes,
                )
                info = await _submit(submit, field="file")
        elif content_type == "application/json":
            job = _parse_body(JobPathRequest, await request.body())
            names = served.resolve(job.metrics)
            check_field_mapping(job.fields)
            submit = partial(
                jobs.submit_path, job.path, metrics=names, on_error=job.on_error, fields=job.fields
            )
            info = await _submit(submit, field="path")
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send multipart/form-data (a file upload) or application/json (a server path), got {content_type or 'none'!r}",
            )
        response.headers["Location"] = f"{JOBS_PATH}/{info.id}"
        return info

    @router.get(
        f"{JOBS_PATH}/{{job_id}}",
        response_model=JobInfo,
        tags=["jobs"],
        responses={404: {"model": ErrorBody}},
    )
    def job_status(job_id: str) -> JobInfo:
        """A job's state and progress; its summary once it succeeded."""
        return _job_or_404(jobs, job_id)

    @router.get(
        f"{JOBS_PATH}/{{job_id}}/results",
        response_class=FileResponse,
        tags=["jobs"],
        responses={
            200: {
                "content": {"application/x-ndjson": {}},
                "description": "The scored records, one JSON per line.",
            },
            404: {"model": ErrorBody},
            409: {"model": ErrorBody},
        },
    )
    def job_results(job_id: str) -> FileResponse:
        """The scored records of a succeeded job (JSON lines, streamed)."""
        info = _job_or_404(jobs, job_id)
        if info.state != "succeeded":
            raise ApiError(
                409, "conflict", f"job {job_id} is {info.state}; results exist once it has succeeded"
            )
        return FileResponse(
            jobs.results_path(job_id), media_type="application/x-ndjson", filename=f"{job_id}.jsonl"
        )

    @router.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        for state, count in jobs.state_counts().items():
            telemetry.jobs.labels(state=state).set(count)
        body, content_type = telemetry.render()
        return Response(body, media_type=content_type)

    return router


_JOB_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": ".jsonl, .jsonl.gz, .parquet or .csv",
                    },
                    "metrics": {
                        "type": "string",
                        "description": "Comma-separated served metric names (default: all).",
                    },
                    "on_error": {"type": "string", "enum": ["fail", "skip"], "default": "skip"},
                    "fields": {"type": "string", "description": "JSON object {canonical: column}."},
                },
            }
        },
        "application/json": {"schema": JobPathRequest.model_json_schema()},
    },
}


# -- request helpers ------------------------------------------------------------------------------
async def _submit(submit: Callable[[], JobInfo], *, field: str) -> JobInfo:
    """Run a job submission (file copy and fsync) off the event loop; name the field it failed on."""
    try:
        return await anyio.to_thread.run_sync(submit)
    except (PayloadTooLargeError, UnknownMetricError):
        raise
    except ConfigError as error:
        raise InputError(str(error), field=field) from None


def _job_or_404(jobs: JobManager, job_id: str) -> JobInfo:
    info = jobs.get(job_id)
    if info is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}", field="job_id")
    return info


_Body = TypeVar("_Body", bound=BaseModel)


def _parse_body(model: type[_Body], body: bytes) -> _Body:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)]
        raise RequestValidationError(errors, body=body) from None


def _form_text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _form_on_error(value: Any) -> str:
    on_error = _form_text(value) or "skip"
    if on_error not in ("fail", "skip"):
        raise InputError(f"on_error must be 'fail' or 'skip', got {on_error!r}", field="on_error")
    return on_error


def _form_fields(value: Any) -> dict[str, str] | None:
    text = _form_text(value)
    if text is None:
        return None
    try:
        fields = json.loads(text)
    except json.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise InputError('fields must be a JSON object {"canonical": "column"}', field="fields")
    check_field_mapping(fields)
    return fields


# -- authentication -------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


def _key_checker(api_keys: ApiKeys | None) -> Callable[..., None]:
    def require_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header_key: Annotated[str | None, Security(_api_key_header)],
    ) -> None:
        if api_keys is None:
            return
        presented = bearer.credentials if bearer is not None else header_key
        if api_keys.identify(presented) is None:
            raise ApiError(
                401,
                "unauthorized",
                "a valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_key


# -- errors ---------------------------------------------------------------------------------------
def error_response(
    telemetry: ServiceTelemetry,
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error response, counted by code."""
    telemetry.errors.labels(code=code).inc()
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _evalsuite_error(error: Exception) -> ApiError:
    """The response for an error raised on purpose (ours, or a timeout)."""
    message = str(error)
    if isinstance(error, ApiError):
        return error
    if isinstance(error, PayloadTooLargeError):
        return ApiError(413, "payload_too_large", message, field=error.field)
    if isinstance(error, UnknownMetricError):
        return ApiError(422, "unknown_metric", message, field="metrics")
    if isinstance(error, InputError):
        return ApiError(422, "validation_error", message, field=error.field)
    if isinstance(error, ConfigError):
        return ApiError(422, "validation_error", message)
    if isinstance(error, ServiceOverloadedError):
        return ApiError(429, "rate_limited", message, headers={"Retry-After": str(RETRY_AFTER_OVERLOADED_S)})
    if isinstance(error, TimeoutError):
        return ApiError(503, "timeout", message, headers={"Retry-After": str(RETRY_AFTER_TIMEOUT_S)})
    if isinstance(error, MicroBatcherClosedError):
        return ApiError(503, "unavailable", "the service is shutting down", headers={"Retry-After": "1"})
    # Model unavailable, missing dependency, ...: our messages say what is wrong and hold no trace.
    return ApiError(500, "internal", message)


def _field_from_loc(loc: tuple[int | str, ...]) -> str | None:
    """``("body", "records", 3, "prediction")`` → ``"records[3].prediction"``."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    field = ""
    for part in parts:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field or None


def _validation_error(error: RequestValidationError) -> ApiError:
    problems = list(error.errors())
    if not problems:
        return ApiError(422, "validation_error", "invalid request")
    first = problems[0]
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", first.get("msg", ""))
        return ApiError(
            422, "validation_error", f"the request body is not valid JSON: {reason}", field="body"
        )
    field = _field_from_loc(tuple(first.get("loc", ())))
    if field is None:  # the body as a whole: absent, or not a JSON object
        return ApiError(
            422,
            "validation_error",
            "the request body must be a JSON object (Content-Type: application/json)",
            field="body",
        )
    more = (
        f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        if len(problems) > 1
        else ""
    )
    return ApiError(
        422, "validation_error", f"{field or 'body'}: {first.get('msg', 'invalid')}{more}", field=field
    )


def _add_exception_handlers(app: FastAPI) -> None:
    def respond(request: Request, error: ApiError) -> JSONResponse:
        telemetry: ServiceTelemetry = request.app.state.telemetry
        return error_response(
            telemetry, error.status, error.code, error.message, field=error.field, headers=error.headers
        )

    async def on_known_error(request: Request, error: Exception) -> JSONResponse:
        return respond(request, _evalsuite_error(error))

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        http_error = cast(HTTPException, error)  # registered for HTTPException only
        code = _STATUS_CODES.get(http_error.status_code, "http_error")
        message = http_error.detail if isinstance(http_error.detail, str) else code.replace("_", " ")
        return respond(request, ApiError(http_error.status_code, code, message, headers=http_error.headers))

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        # Registered for RequestValidationError only.
        return respond(request, _validation_error(cast(RequestValidationError, error)))

    async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        logger.error(
            "unexpected error %s on %s %s", incident, request.method, request.url.path, exc_info=error
        )
        return respond(request, ApiError(500, "internal", f"internal server error (incident {incident})"))

    for known in (ApiError, EvalsuiteError, TimeoutError):
        app.add_exception_handler(known, on_known_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected_error)


# -- body size ------------------------------------------------------------------------------------
class BodySizeLimit:
    """ASGI middleware refusing request bodies over a per-path limit with 413.

    The declared ``Content-Length`` is checked before the app runs (nothing is read, no key is
    checked), and the bytes actually received are counted as the app reads them, so a body sent
    without a length (chunked) cannot pass the limit either.
    """

    def __init__(
        self, app: ASGIApp, *, limit_for_path: Callable[[str], int], telemetry: ServiceTelemetry
    ) -> None:
        self.app = app
        self.limit_for_path = limit_for_path
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for_path(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = error_response(
                self.telemetry, 413, "payload_too_large", _too_large(limit), field="body"
            )
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(413, "payload_too_large", _too_large(limit), field="body")
            return message

        await self.app(scope, receive_within_limit, send)


def _too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
