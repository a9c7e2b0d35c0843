"""The HTTP API of the scoring service (FastAPI): ``create_app(settings)`` builds it.

Models are loaded and warmed when the app is created, so the first request is not slow and a bad
configuration fails before the server binds. Every error response has the body
``{"error": {"code", "message", "field"}}``, never a stack trace; the traceback of an unexpected
error goes to the server log. Requests pass, outermost first: :class:`RequestTelemetry` (counted,
timed, logged), :class:`ApiKeyAuth` (the key, before any body is read), :class:`BodyLimits` (size
and read deadline of the body), then the routes.

    app = create_app(ServiceSettings(metrics={"toxicity": {}, "pii": {}}))
    uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
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

import evalsuite
from evalsuite.errors import ConfigError, EvalsuiteError, InputError, UnknownMetricError
from evalsuite.runtime.microbatch import MicroBatcherClosedError
from evalsuite.service.auth import ApiKeys
from evalsuite.service.jobs import JobInfo, JobManager, PayloadTooLargeError
from evalsuite.service.middleware import ApiKeyAuth, BodyLimit, BodyLimits, caller_of
from evalsuite.service.responses import ApiError, ServiceJSONResponse, error_response
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
    408: "request_timeout",
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
        default_response_class=ServiceJSONResponse,
    )
    app.state.settings = settings
    app.state.telemetry = telemetry
    app.state.served = served  # for introspection: batcher stats, the model lock
    app.state.jobs = jobs
    app.state.score_limiter = None
    _add_exception_handlers(app)
    # Each add_middleware wraps the previous ones: the last added runs first.
    upload_limit = BodyLimit(settings.max_upload_bytes, settings.upload_timeout_s)
    body_limit = BodyLimit(settings.max_body_bytes, settings.read_timeout_s)
    app.add_middleware(
        BodyLimits,
        limit_for_path=lambda path: upload_limit if path == JOBS_PATH else body_limit,
        telemetry=telemetry,
    )
    public_paths = {
        "/healthz",
        app.openapi_url,
        app.docs_url,
        app.redoc_url,
        app.swagger_ui_oauth2_redirect_url,
    }
    app.add_middleware(
        ApiKeyAuth,
        api_keys=api_keys,
        public_paths={path for path in public_paths if path},
        telemetry=telemetry,
    )
    app.add_middleware(RequestTelemetry, telemetry=telemetry)  # outermost: sees every response

    @app.get("/healthz", response_model=HealthResponse, tags=["service"])
    def health() -> HealthResponse:
        """Liveness; needs no API key."""
        return HealthResponse(metrics=served.names)

    app.include_router(_api_routes(settings, served, jobs, telemetry))
    return app


def _api_routes(
    settings: ServiceSettings, served: ServedMetrics, jobs: JobManager, telemetry: ServiceTelemetry
) -> APIRouter:
    router = APIRouter(dependencies=[Depends(_caller)], responses=_ERROR_RESPONSES)

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
    async def submit_job(request: Request, response: Response, caller: Caller) -> JobInfo:
        """Queue a file for scoring: a multipart upload, or a JSON ``{"path": ...}`` on the server.

        The job is the caller's: only requests with the same API key see it.
        """
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
                    owner=caller,
                )
                info = await _submit(submit, field="file")
        elif content_type == "application/json":
            job = _parse_body(JobPathRequest, await request.body())
            names = served.resolve(job.metrics)
            check_field_mapping(job.fields)
            submit = partial(
                jobs.submit_path,
                job.path,
                metrics=names,
                on_error=job.on_error,
                fields=job.fields,
                owner=caller,
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
    def job_status(job_id: str, caller: Caller) -> JobInfo:
        """A job's state and progress; its summary once it succeeded."""
        return _job_or_404(jobs, job_id, caller)

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
    def job_results(job_id: str, caller: Caller) -> FileResponse:
        """The scored records of a succeeded job (JSON lines, streamed)."""
        info = _job_or_404(jobs, job_id, caller)
        if info.state != "succeeded":
            raise ApiError(
                409, "conflict", f"job {job_id} is {info.state}; results exist once it has succeeded"
            )
        return FileResponse(
            jobs.results_path(job_id, visible_to=caller),
            media_type="application/x-ndjson",
            filename=f"{job_id}.jsonl",
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


def _job_or_404(jobs: JobManager, job_id: str, caller: str | None) -> JobInfo:
    # Another key's job answers exactly as a job that does not exist: its existence stays private.
    info = jobs.get(job_id, visible_to=caller)
    if info is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}", field="job_id")
    return info


_Body = TypeVar("_Body", bound=BaseModel)


def _parse_body(model: type[_Body], body: bytes) -> _Body:
    """``body`` as ``model``, parsed as FastAPI parses declared bodies (so ``"\\ud800"`` is JSON)."""
    try:
        data = json.loads(body)
    except ValueError as error:  # not JSON, or not UTF-8
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        problem = {
            "type": "json_invalid",
            "loc": ("body",),
            "msg": "JSON decode error",
            "ctx": {"error": reason},
        }
        raise RequestValidationError([problem], body=body) from None
    try:
        return model.model_validate(data)
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
# ApiKeyAuth checks the key, before any body is read; these declare its two headers in OpenAPI.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


def _caller(
    request: Request,
    _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    _header_key: Annotated[str | None, Security(_api_key_header)],
) -> str | None:
    """The name of the caller's API key, as ApiKeyAuth identified it (``None``: an open server)."""
    return caller_of(request.scope)


Caller = Annotated[str | None, Depends(_caller)]


# -- errors ---------------------------------------------------------------------------------------
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


# Pydantic's error types for a body that is absent or not a JSON object.
_NOT_AN_OBJECT = frozenset({"missing", "model_attributes_type", "model_type", "dict_type"})


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
    if field is None and first.get("type") in _NOT_AN_OBJECT:
        return ApiError(
            422,
            "validation_error",
            "the request body must be a JSON object (Content-Type: application/json)",
            field="body",
        )
    if field is None:  # the body as a whole, e.g. a key that is not valid Unicode
        return ApiError(
            422, "validation_error", f"the request body: {first.get('msg', 'invalid')}", field="body"
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
