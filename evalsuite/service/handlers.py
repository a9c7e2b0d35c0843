"""Error responses: every error the app raises or meets becomes ``{"error": {"code", "message", "field"}}``.

Errors raised on purpose (evalsuite's, :class:`ApiError`, a timeout) keep their message; a request
FastAPI cannot parse names the field at fault; anything else is logged with its traceback and
answered with an incident id only.
"""

from __future__ import annotations

import logging
import uuid
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from evalsuite.errors import ConfigError, EvalsuiteError, InputError, UnknownMetricError
from evalsuite.runtime.microbatch import MicroBatcherClosedError
from evalsuite.service.inputs import PayloadTooLargeError
from evalsuite.service.responses import ApiError, error_response
from evalsuite.service.scoring import ServiceOverloadedError
from evalsuite.service.telemetry import ServiceTelemetry

__all__ = ["RETRY_AFTER_OVERLOADED_S", "RETRY_AFTER_TIMEOUT_S", "add_exception_handlers", "api_error"]

logger = logging.getLogger("evalsuite.service")

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
# Pydantic's error types for a body that is absent or not a JSON object.
_NOT_AN_OBJECT = frozenset({"missing", "model_attributes_type", "model_type", "dict_type"})


def api_error(error: Exception) -> ApiError:
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


def add_exception_handlers(app: FastAPI) -> None:
    """Answer every error with the one error shape, counted by code in the app's telemetry."""

    def respond(request: Request, error: ApiError) -> JSONResponse:
        telemetry: ServiceTelemetry = request.app.state.telemetry
        return error_response(
            telemetry, error.status, error.code, error.message, field=error.field, headers=error.headers
        )

    async def on_known_error(request: Request, error: Exception) -> JSONResponse:
        return respond(request, api_error(error))

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
