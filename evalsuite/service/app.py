"""The HTTP API of the scoring service (FastAPI): ``create_app(settings)`` builds it.

Models are loaded and warmed when the app is created, so the first request is not slow and a bad
configuration fails before the server binds. Every error response has the body
``{"error": {"code", "message", "field"}}``, never a stack trace; the traceback of an unexpected
error goes to the server log. Requests pass, outermost first: :class:`RequestTelemetry` (counted,
timed, logged), :class:`ApiKeyAuth` (the key, before any body is read), :class:`BodyLimits` (size
and read deadline of the body), then the routes. Errors become responses in
:mod:`evalsuite.service.handlers`; what routes take from a request is in
:mod:`evalsuite.service.dependencies`.

    app = create_app(ServiceSettings(metrics={"toxicity": {}, "pii": {}}))
    uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

import evalsuite
from evalsuite.errors import InputError
from evalsuite.service.auth import ApiKeys
from evalsuite.service.dependencies import (
    Caller,
    caller_name,
    form_fields,
    form_on_error,
    form_text,
    job_or_404,
    parse_body,
    submit,
)
from evalsuite.service.handlers import add_exception_handlers
from evalsuite.service.jobs import JobInfo, JobManager
from evalsuite.service.middleware import ApiKeyAuth, BodyLimit, BodyLimits
from evalsuite.service.responses import ApiError, ServiceJSONResponse
from evalsuite.service.schemas import (
    ErrorBody,
    HealthResponse,
    JobPathRequest,
    MetricsResponse,
    ScoreRequest,
    ScoreResponse,
)
from evalsuite.service.scoring import ServedMetrics, check_field_mapping
from evalsuite.service.settings import ServiceSettings
from evalsuite.service.telemetry import RequestTelemetry, ServiceTelemetry

__all__ = ["ApiError", "create_app"]

logger = logging.getLogger("evalsuite.service")

JOBS_PATH = "/v1/jobs"
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
    add_exception_handlers(app)
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
    router = APIRouter(dependencies=[Depends(caller_name)], responses=_ERROR_RESPONSES)

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
                metrics = form_text(form.get("metrics"))
                names = served.resolve([name.strip() for name in metrics.split(",")] if metrics else None)
                upload_job = partial(
                    jobs.submit_upload,
                    upload.filename or "upload",
                    upload.file,
                    metrics=names,
                    on_error=form_on_error(form.get("on_error")),
                    fields=form_fields(form.get("fields")),
                    max_bytes=settings.max_upload_bytes,
                    owner=caller,
                )
                info = await submit(upload_job, field="file")
        elif content_type == "application/json":
            job = parse_body(JobPathRequest, await request.body())
            names = served.resolve(job.metrics)
            check_field_mapping(job.fields)
            path_job = partial(
                jobs.submit_path,
                job.path,
                metrics=names,
                on_error=job.on_error,
                fields=job.fields,
                owner=caller,
            )
            info = await submit(path_job, field="path")
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
        return job_or_404(jobs, job_id, caller)

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
        info = job_or_404(jobs, job_id, caller)
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
