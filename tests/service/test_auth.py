"""API keys: the keys file, the constant-time check, the HTTP 401s and the ``serve keys add`` command."""

from __future__ import annotations

import hmac
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evalsuite.errors import ConfigError
from evalsuite.service import auth
from evalsuite.service.auth import ApiKeys, add_api_key, hash_api_key, load_api_keys
from evalsuite.service.command import serve_app

RECORD = {"records": [{"prediction": "hello"}], "metrics": ["pii"]}


@pytest.fixture
def keys_file(tmp_path: Path) -> tuple[Path, str]:
    """A keys file with two keys; returns it and the key named ``ci``."""
    path = tmp_path / "keys.txt"
    add_api_key(path, name="alice")
    return path, add_api_key(path, name="ci")


@pytest.fixture
def client(make_client: Any, keys_file: tuple[Path, str]) -> Any:
    return make_client(metrics={"pii": {}}, api_keys_file=keys_file[0])


# -- the keys file --------------------------------------------------------------------------------
def test_a_new_key_is_stored_only_as_its_hash_in_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    key = add_api_key(path, name="ci")
    assert len(key) >= 40
    text = path.read_text()
    assert key not in text
    assert f"ci:{hash_api_key(key)}" in text.splitlines()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_api_keys(path) == {"ci": hash_api_key(key)}
    assert add_api_key(path, name="other") != key


def test_a_duplicate_or_malformed_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    add_api_key(path, name="ci")
    with pytest.raises(ConfigError, match="already has a key named 'ci'"):
        add_api_key(path, name="ci")
    with pytest.raises(ConfigError, match="key name must be"):
        add_api_key(path, name="has:colon")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ci", "keys.txt:2: expected '<name>:<64 hex digits of sha256>'"),
        ("ci:abc", "keys.txt:2: expected"),
        ("ci:" + "g" * 64, "keys.txt:2: expected"),
        ("alice:" + "a" * 64, "keys.txt:2: key name 'alice' appears twice"),
    ],
)
def test_a_malformed_keys_file_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(f"alice:{'b' * 64}  # comment\n{line}\n\n# trailing comment\n")
    with pytest.raises(ConfigError, match=message):
        load_api_keys(path)


def test_a_missing_or_empty_keys_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the API keys file"):
        ApiKeys.from_file(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="has no keys"):
        ApiKeys.from_file(tmp_path / "empty.txt")


def test_identify_compares_with_every_key_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    keys = ApiKeys({"first": hash_api_key("k1"), "second": hash_api_key("k2"), "third": hash_api_key("k3")})
    assert keys.identify("k1") == "first"
    assert len(compared) == 3  # no early exit on the first match
    compared.clear()
    assert keys.identify("nope") is None
    assert len(compared) == 3
    assert all(len(a) == len(b) == 64 for a, b in compared)  # hashes, so lengths never differ
    assert keys.identify("") is None
    assert keys.identify(None) is None


# -- over HTTP ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"X-API-Key": "wrong-key"},
        {"Authorization": "Basic Y2k6a2V5"},
        {"Authorization": "Bearer"},
    ],
)
def test_no_or_a_wrong_key_gets_401(client: Any, svc: Any, headers: dict[str, str]) -> None:
    for method, path, body in [
        ("POST", "/v1/score", RECORD),
        ("GET", "/v1/metrics", None),
        ("GET", "/v1/jobs/some-id", None),
        ("POST", "/v1/jobs", {"path": "/x.jsonl"}),
        ("GET", "/metrics", None),
    ]:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        error = svc.error_of(response)
        assert error["code"] == "unauthorized"
        assert "Authorization: Bearer <key>" in error["message"]


def test_the_right_key_is_accepted_in_either_header(client: Any, keys_file: tuple[Path, str]) -> None:
    key = keys_file[1]
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"X-API-Key": key},
        {"authorization": f"bearer {key}"},
    ):
        response = client.post("/v1/score", json=RECORD, headers=headers)
        assert response.status_code == 200, headers
        assert response.json()["scores"][0]["pii_total"] == 0.0
    assert client.get("/v1/metrics", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200


def test_health_needs_no_key(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["metrics"] == ["pii"]


def test_the_openapi_schema_declares_both_key_headers(client: Any) -> None:
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"


def test_an_unreadable_keys_file_stops_the_app_from_starting(make_client: Any, tmp_path: Path) -> None:
    bad = tmp_path / "keys.txt"
    bad.write_text("not a key line\n")
    with pytest.raises(ConfigError, match=r"keys\.txt:1"):
        make_client(api_keys_file=bad)


# -- the command ----------------------------------------------------------------------------------
def test_keys_add_prints_the_key_once_and_stores_its_hash(tmp_path: Path, make_client: Any) -> None:
    path = tmp_path / "keys.txt"
    result = CliRunner().invoke(serve_app, ["keys", "add", str(path), "--name", "ci"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert load_api_keys(path) == {"ci": hash_api_key(key)}
    assert key not in path.read_text()
    client = make_client(metrics={"pii": {}}, api_keys_file=path)
    assert client.post("/v1/score", json=RECORD, headers={"X-API-Key": key}).status_code == 200

    again = CliRunner().invoke(serve_app, ["keys", "add", str(path), "--name", "ci"])
    assert again.exit_code == 2
    assert "already has a key named 'ci'" in again.output


def test_serve_with_a_bad_keys_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        serve_app, ["--metrics", "pii", "--api-keys", str(tmp_path / "absent"), "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "cannot read the API keys file" in result.output
