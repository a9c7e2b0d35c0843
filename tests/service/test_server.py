"""The service under a real uvicorn server, run as ``evalsuite serve`` runs it: slow clients are cut
off (read timeouts on headers and body) and credentials in a URL never reach a log."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evalsuite.service.auth import add_api_key
from evalsuite.service.command import serve_app

READ_TIMEOUT_S = 0.5
TRICKLE_S = 0.05  # between two bytes a slow client sends


def trickle(sock: socket.socket, data: bytes, *, until: float) -> bool:
    """Send ``data`` a byte at a time until ``until`` (a monotonic time); ``False`` once the server closed."""
    for byte in data:
        if time.monotonic() > until:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # closed by the server
            return False
        time.sleep(TRICKLE_S)
    return True


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_error(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


# -- read timeouts --------------------------------------------------------------------------------
def test_headers_sent_a_byte_at_a_time_get_408_and_the_connection_closed(live_server: Any) -> None:
    server = live_server(read_timeout_s=READ_TIMEOUT_S)
    with server.connect() as sock:
        started = time.monotonic()
        headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"a" * 200 + b"\r\n\r\n"
        trickle(sock, headers, until=started + 10)
        response = read_all(sock)
        elapsed = time.monotonic() - started
    status, error = status_and_error(response)
    assert (status, error["code"]) == (408, "request_timeout")
    assert "headers did not arrive within 0.5 s" in error["message"]
    assert b"connection: close" in response.lower()
    assert elapsed < READ_TIMEOUT_S + 2  # cut at the deadline, not when the client finished


def test_a_body_sent_a_byte_at_a_time_gets_408_naming_the_body(live_server: Any) -> None:
    server = live_server(read_timeout_s=READ_TIMEOUT_S)
    body = json.dumps({"records": [{"prediction": "x" * 500}]}).encode()
    head = (
        f"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with server.connect() as sock:
        sock.sendall(head)  # the headers in time: the body's deadline runs from here
        started = time.monotonic()
        trickle(sock, body, until=started + 10)
        response = read_all(sock)
        elapsed = time.monotonic() - started
    status, error = status_and_error(response)
    assert status == 408
    assert error == {
        "code": "request_timeout",
        "message": "the request body did not arrive within 0.5 s",
        "field": "body",
    }
    assert elapsed < READ_TIMEOUT_S + 2


def test_an_idle_connection_is_closed_without_an_answer(live_server: Any) -> None:
    server = live_server(read_timeout_s=READ_TIMEOUT_S)
    with server.connect() as sock:
        started = time.monotonic()
        assert read_all(sock) == b""  # closed, nothing written
        assert time.monotonic() - started < READ_TIMEOUT_S + 2


def test_a_request_slower_to_answer_than_the_read_timeout_is_not_cut(
    live_server: Any, slow_metric: Any
) -> None:
    slow_metric.seconds_per_record = 0.3
    server = live_server(metrics={"slow": {}}, read_timeout_s=0.2, warm_up=False)
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    body = json.dumps({"records": [{"prediction": "x" * 1000}, {"prediction": "y" * 1000}]})
    connection.request("POST", "/v1/score", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    assert [row["slow_chars"] for row in json.loads(response.read())["scores"]] == [1000.0, 1000.0]
    # The connection stays usable for the next request (keep-alive), sent within the timeout.
    connection.request("GET", "/healthz")
    assert connection.getresponse().status == 200
    connection.close()


def test_serve_passes_the_read_timeouts_to_the_server_and_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append({"app": app, **options}))
    arguments = ["--metrics", "pii", "--data-dir", str(tmp_path), "--no-cache"]
    result = CliRunner().invoke(serve_app, [*arguments, "--read-timeout", "7", "--upload-timeout", "90"])
    assert result.exit_code == 0, result.output
    [call] = calls
    assert call["http"].header_timeout_s == 7.0
    assert call["access_log"] is False  # the app logs requests, without their query strings
    settings = call["app"].state.settings
    assert (settings.read_timeout_s, settings.upload_timeout_s) == (7.0, 90.0)
    call["app"].state.served.close()


def test_read_timeouts_have_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append({"app": app, **options}))
    result = CliRunner().invoke(serve_app, ["--metrics", "pii", "--data-dir", str(tmp_path), "--no-cache"])
    assert result.exit_code == 0, result.output
    settings = calls[0]["app"].state.settings
    assert (calls[0]["http"].header_timeout_s, settings.read_timeout_s, settings.upload_timeout_s) == (
        30.0,
        30.0,
        600.0,
    )
    calls[0]["app"].state.served.close()


# -- credentials in URLs --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    ["api_key={secret}", "key={secret}", "token={secret}", "access_token={secret}", "a=1&API-KEY={secret}"],
)
def test_a_key_in_the_query_string_is_refused_and_never_logged(
    live_server: Any,
    svc: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    query: str,
) -> None:
    keys = tmp_path / "keys.txt"
    secret = add_api_key(keys, name="ci")  # a real key: even a valid one is not taken from a URL
    server = live_server(api_keys_file=keys)
    caplog.set_level(logging.DEBUG)
    responses = []
    for path in ("/v1/metrics", "/healthz", "/v1/score"):
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        connection.request("GET", f"{path}?{query.format(secret=secret)}")
        response = connection.getresponse()
        responses.append((response.status, json.loads(response.read())["error"]))
        connection.close()
    for status, error in responses:
        assert (status, error["code"]) == (400, "credentials_in_url")
        assert secret not in error["message"]
    # Logged once the response is sent: wait for the line, then look at everything logged.
    svc.wait_until(lambda: '"GET /v1/score HTTP/1.1" 400' in caplog.text)
    logged = caplog.text + "".join(capfd.readouterr())
    assert secret not in logged
    assert '"GET /v1/metrics HTTP/1.1" 400' in logged  # the access log has the path, not the query


def test_the_access_log_never_has_a_query_string(
    live_server: Any, svc: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    server = live_server()
    caplog.set_level(logging.INFO)
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.request("GET", "/healthz?session=private-value&x=%0Aforged")
    assert connection.getresponse().status == 200
    connection.close()
    svc.wait_until(lambda: '"GET /healthz HTTP/1.1" 200' in caplog.text)
    logged = caplog.text + "".join(capfd.readouterr())
    assert "private-value" not in logged
    assert "forged" not in logged
