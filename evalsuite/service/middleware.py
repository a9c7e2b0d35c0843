"""ASGI middleware that guards every request before a route sees it: credentials, then the body.

:class:`ApiKeyAuth` decides from the request line and headers alone, so a request without a valid
key is refused (``401``) before one byte of its body is read or parsed, whatever the route, and a
key sent in the query string is refused (``400``) rather than used. :class:`BodyLimits` bounds
what an admitted request may send: its size (``413``) and the time it takes to send it (``408``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import parse_qsl

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evalsuite.service.auth import ApiKeys
from evalsuite.service.responses import ApiError, error_response
from evalsuite.service.telemetry import ServiceTelemetry

__all__ = ["CALLER", "ApiKeyAuth", "BodyLimit", "BodyLimits", "caller_of"]

CALLER = "api_key_name"  # key of the request state holding the caller's key name (None: open server)

# Query parameters that look like credentials: a URL is written to proxy, server and browser
# logs, so a key in one is refused (and must be replaced), never accepted.
_CREDENTIAL_PARAMETERS = frozenset(
    {
        "access_token",
        "api_key",
        "api_token",
        "apikey",
        "auth",
        "auth_token",
        "authorization",
        "bearer",
        "key",
        "password",
        "secret",
        "token",
        "x_api_key",
    }
)
_UNAUTHORIZED = "a valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
# Said with a 408 or 413: the rest of the body is not read, so the connection cannot be reused.
_CLOSE = {"Connection": "close"}


def caller_of(scope: Scope) -> str | None:
    """The name of the API key the request was made with (``None`` on an open server).

    Raises ``KeyError`` for a request :class:`ApiKeyAuth` did not see, so a route mounted
    without it fails closed.
    """
    name: str | None = scope["state"][CALLER]
    return name


class ApiKeyAuth:
    """Refuses requests without a valid API key (``401``), and credentials in the query string (``400``).

    Only ``public_paths`` (health, docs) need no key; everything else does, unknown paths too. The
    caller's key name goes into the request state (:func:`caller_of`). Without ``api_keys`` every
    request passes as caller ``None``, but query-string credentials are still refused.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: ApiKeys | None,
        public_paths: Collection[str],
        telemetry: ServiceTelemetry,
    ) -> None:
        self.app = app
        self.api_keys = api_keys
        self.public_paths = frozenset(public_paths)
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parameter = _credential_in_query(scope)
        if parameter is not None:
            response = error_response(
                self.telemetry,
                400,
                "credentials_in_url",
                "API keys are not accepted in the URL, which ends up in logs: send "
                "'Authorization: Bearer <key>' or 'X-API-Key: <key>', and replace a key that was sent this way",
                field=parameter,
            )
            await response(scope, receive, send)
            return
        caller = None
        if self.api_keys is not None and scope["path"] not in self.public_paths:
            caller = self.api_keys.identify(_presented_key(Headers(scope=scope)))
            if caller is None:
                response = error_response(
                    self.telemetry, 401, "unauthorized", _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
        scope.setdefault("state", {})[CALLER] = caller
        await self.app(scope, receive, send)


def _credential_in_query(scope: Scope) -> str | None:
    """The name of the first query parameter that looks like a credential, or ``None``."""
    query = scope.get("query_string", b"").decode("latin-1")
    for name, _ in parse_qsl(query, keep_blank_values=True):
        if name.strip().lower().replace("-", "_") in _CREDENTIAL_PARAMETERS:
            return name
    return None


def _presented_key(headers: Headers) -> str | None:
    """The key of ``Authorization: Bearer <key>``, else of ``X-API-Key``."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key")


@dataclass(frozen=True)
class BodyLimit:
    """How large a request body may be, and how long its client may take to send it."""

    max_bytes: int
    read_timeout_s: float


class BodyLimits:
    """Refuses a request body over its path's size (``413``) or slower than its read timeout (``408``).

    The declared ``Content-Length`` is checked before the app runs (nothing is read), and the
    bytes actually received are counted as the app reads them, so a body sent without a length
    (chunked) cannot pass the limit either. The whole body must arrive within ``read_timeout_s`` of
    the request's headers, so a client trickling it (a byte a second) cannot hold the connection
    and a worker; the time is total, not between reads, which a trickle would reset.
    """

    def __init__(
        self, app: ASGIApp, *, limit_for_path: Callable[[str], BodyLimit], telemetry: ServiceTelemetry
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
        if declared is not None and declared > limit.max_bytes:
            response = error_response(
                self.telemetry, 413, "payload_too_large", _too_large(limit), field="body", headers=_CLOSE
            )
            await response(scope, receive, send)
            return
        deadline = time.monotonic() + limit.read_timeout_s
        received = 0
        complete = False

        async def receive_within_limits() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what is left to wait for is the client going away
                return await receive()
            with anyio.move_on_after(deadline - time.monotonic()) as waiting:
                message = await receive()
            if waiting.cancelled_caught:
                raise ApiError(
                    408,
                    "request_timeout",
                    f"the request body did not arrive within {limit.read_timeout_s:g} s",
                    field="body",
                    headers=_CLOSE,
                )
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    raise ApiError(413, "payload_too_large", _too_large(limit), field="body", headers=_CLOSE)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, receive_within_limits, send)


def _too_large(limit: BodyLimit) -> str:
    return f"the request body is larger than the limit of {limit.max_bytes} bytes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
