"""How ``evalsuite serve`` runs the app under uvicorn: its options, and a deadline on request headers.

uvicorn bounds only the idle time between two requests (``timeout_keep_alive``), and any byte
received resets it, so a client sending its headers a byte at a time could hold a connection
forever. :class:`HeaderTimeoutProtocol` gives each request's headers ``read_timeout_s`` from the
moment the connection opened or the previous response was sent; the body then gets its own
deadline in :class:`~evalsuite.service.middleware.BodyLimits`.

    uvicorn.run(app, **server_options(settings, log_level="info"))
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

from evalsuite.service.responses import ServiceJSONResponse, error_body
from evalsuite.service.settings import ServiceSettings

__all__ = ["HeaderTimeoutProtocol", "header_timeout_protocol", "server_options"]

logger = logging.getLogger("evalsuite.service")


def server_options(settings: ServiceSettings, *, log_level: str = "info") -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` (or ``uvicorn.Config``) for the service."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level.lower(),
        "server_header": False,
        # RequestTelemetry writes the access log, without query strings: uvicorn's would keep a
        # key someone put in the URL.
        "access_log": False,
        "http": header_timeout_protocol(settings.read_timeout_s),
    }


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers are too slow.

    A request's headers must be complete ``header_timeout_s`` after the connection opened, or
    after the previous response was sent; otherwise the connection is closed, with a ``408``
    when some of the request had arrived (an idle connection is just closed, as on keep-alive
    expiry). A request being answered is never cut: the check looks at the connection's state
    when the timer fires.
    """

    header_timeout_s: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._bytes_since_armed = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        self._bytes_since_armed = True
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers are due from now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._bytes_since_armed = False
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._on_header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # the headers came in time: that request is being answered
        if self._bytes_since_armed:
            logger.info("closing a connection whose request headers took over %g s", self.header_timeout_s)
            self.transport.write(_header_timeout_response(self.header_timeout_s))
        self.transport.close()


def header_timeout_protocol(timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """:class:`HeaderTimeoutProtocol` with ``timeout_s`` (uvicorn takes a class, not an instance)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": timeout_s})


def _header_timeout_response(timeout_s: float) -> bytes:
    # Written raw: h11 cannot answer a request whose headers it has not parsed.
    body = ServiceJSONResponse(
        error_body("request_timeout", f"the request headers did not arrive within {timeout_s:g} s")
    ).body
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
