"""What the routes take from a request: the caller (the name of its API key), a body parsed as FastAPI
parses declared ones, and the fields of a job's multipart form; each problem names its field."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from evalsuite.errors import ConfigError, InputError, UnknownMetricError
from evalsuite.run import OnError, check_on_error
from evalsuite.service.inputs import PayloadTooLargeError
from evalsuite.service.jobs import JobInfo, JobManager
from evalsuite.service.middleware import caller_of
from evalsuite.service.responses import ApiError
from evalsuite.service.scoring import check_field_mapping

__all__ = [
    "Caller",
    "caller_name",
    "form_fields",
    "form_on_error",
    "form_text",
    "job_or_404",
    "parse_body",
    "submit",
]

# -- authentication -------------------------------------------------------------------------------
# ApiKeyAuth checks the key, before any body is read; these declare its two headers in OpenAPI.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


def caller_name(
    request: Request,
    _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    _header_key: Annotated[str | None, Security(_api_key_header)],
) -> str | None:
    """The name of the caller's API key, as ApiKeyAuth identified it (``None``: an open server)."""
    return caller_of(request.scope)


Caller = Annotated[str | None, Depends(caller_name)]


# -- bodies ---------------------------------------------------------------------------------------
_Body = TypeVar("_Body", bound=BaseModel)


def parse_body(model: type[_Body], body: bytes) -> _Body:
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


def form_text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def form_on_error(value: Any) -> OnError:
    """The form's ``on_error`` (default ``skip``), or a 422 naming the field."""
    try:
        return check_on_error(form_text(value) or "skip")
    except ConfigError as error:
        raise InputError(str(error), field="on_error") from None


def form_fields(value: Any) -> dict[str, str] | None:
    text = form_text(value)
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


# -- jobs -----------------------------------------------------------------------------------------
async def submit(work: Callable[[], JobInfo], *, field: str) -> JobInfo:
    """Run a job submission (file copy and fsync) off the event loop; name the field it failed on."""
    try:
        return await anyio.to_thread.run_sync(work)
    except (PayloadTooLargeError, UnknownMetricError):
        raise
    except ConfigError as error:
        raise InputError(str(error), field=field) from None


def job_or_404(jobs: JobManager, job_id: str, caller: str | None) -> JobInfo:
    # Another key's job answers exactly as a job that does not exist: its existence stays private.
    info = jobs.get(job_id, visible_to=caller)
    if info is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}", field="job_id")
    return info
