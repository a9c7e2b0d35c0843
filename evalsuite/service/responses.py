"""The JSON responses of the service: one error shape, and an encoding no string can break.

Every error is ``{"error": {"code", "message", "field"}}``. Response bodies are UTF-8 JSON; a
string that UTF-8 cannot hold (a lone surrogate such as ``"\\ud800"``, which JSON requests may
carry as an escape and error messages may quote back) is written with the surrogate as the
visible text ``\\ud800``, so echoing a bad input can never turn a 4xx into a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from evalsuite.service.telemetry import ServiceTelemetry

__all__ = ["ApiError", "ServiceJSONResponse", "error_body", "error_response"]


class ApiError(HTTPException):
    """An error response with its status, code, message and the request field at fault.

    An :class:`HTTPException`, so FastAPI passes it through untouched when it is raised while the
    body is read (the body limits do that).
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


class ServiceJSONResponse(JSONResponse):
    """Compact UTF-8 JSON; strings UTF-8 cannot encode are written with ``\\uXXXX`` as text."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(_encodable(content))


def _encodable(value: Any) -> Any:
    """``value`` with every string (keys included) made UTF-8 encodable."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return value


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The body of every error response."""
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(
    telemetry: ServiceTelemetry,
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ServiceJSONResponse:
    """The one shape of every error response, counted by code."""
    telemetry.errors.labels(code=code).inc()
    return ServiceJSONResponse(
        error_body(code, message, field), status_code=status, headers=dict(headers or {})
    )
