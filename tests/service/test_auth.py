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


# -- the key is checked before the body -----------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "content", "content_type"),
    [
        ("/v1/score", b'{"records": [', "application/json"),
        ("/v1/score", b"\xff\xfe not json", "application/json"),
        ("/v1/score", b'{"records": []}', "application/json"),
        ("/v1/jobs", b'{"path": ', "application/json"),
        ("/v1/jobs", b"--x\r\nbroken multipart", "multipart/form-data; boundary=x"),
        ("/v1/jobs", b"a,b\n", "text/csv"),
        ("/v2/unknown", b"{}", "application/json"),
    ],
)
def test_a_bad_body_without_a_key_gets_401_not_a_body_error(
    client: Any, svc: Any, path: str, content: bytes, content_type: str
) -> None:
    response = client.post(path, content=content, headers={"content-type": content_type})
    assert response.status_code == 401
    assert svc.error_of(response)["code"] == "unauthorized"


def test_without_a_key_the_body_is_never_read(client: Any, svc: Any) -> None:
    read: list[bytes] = []

    def body() -> Any:  # the test client reads it only when the app asks for the body
        read.append(b"{")
        yield b'{"records": [{"prediction": "hello"}]}'

    for path in ("/v1/score", "/v1/jobs"):
        response = client.post(path, content=body(), headers={"content-type": "application/json"})
        assert response.status_code == 401, path
    assert read == []


def test_a_huge_declared_body_without_a_key_gets_401(client: Any, svc: Any) -> None:
    response = client.post(
        "/v1/score", content=b"{}", headers={"content-type": "application/json", "content-length": "2"}
    )
    assert response.status_code == 401
    huge = client.post("/v1/score", headers={"content-length": str(1 << 40)})
    assert huge.status_code == 401


def test_a_key_in_the_query_string_is_refused(client: Any, svc: Any, keys_file: tuple[Path, str]) -> None:
    key = keys_file[1]
    for query in (f"api_key={key}", f"token={key}", f"access_token={key}", f"Key={key}"):
        # Refused even with a valid key in the header: the one in the URL must be replaced.
        response = client.get(f"/v1/metrics?{query}", headers={"X-API-Key": key})
        assert response.status_code == 400, query
        error = svc.error_of(response)
        assert error["code"] == "credentials_in_url"
        assert error["field"] == query.split("=")[0]
        assert key not in response.text
    assert client.get("/v1/metrics?page=2", headers={"X-API-Key": key}).status_code == 200


def test_a_key_in_the_query_string_is_refused_on_an_open_server(make_client: Any, svc: Any) -> None:
    response = make_client(metrics={"pii": {}}).get("/healthz?apikey=abc")
    assert response.status_code == 400
    assert svc.error_of(response)["field"] == "apikey"


# -- jobs belong to the key that submitted them ---------------------------------------------------
def submit(client: Any, key: str) -> dict[str, Any]:
    response = client.post(
        "/v1/jobs",
        files={"file": ("a.jsonl", b'{"id": "a", "prediction": "mail a@b.org"}\n')},
        headers={"X-API-Key": key},
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_done(client: Any, svc: Any, job_id: str, key: str) -> None:
    svc.wait_until(
        lambda: (
            client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key}).json()["state"]
            in ("succeeded", "failed")
        )
    )


def test_a_job_is_visible_only_to_the_key_that_submitted_it(
    make_client: Any, svc: Any, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    alice, bob = add_api_key(keys, name="alice"), add_api_key(keys, name="bob")
    client = make_client(metrics={"pii": {}}, api_keys_file=keys)
    job = submit(client, alice)
    wait_done(client, svc, job["id"], alice)

    assert client.get(f"/v1/jobs/{job['id']}", headers={"X-API-Key": alice}).json()["state"] == "succeeded"
    results = client.get(f"/v1/jobs/{job['id']}/results", headers={"X-API-Key": alice})
    assert results.status_code == 200
    assert "a@b.org" in results.text
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/results"):
        theirs = client.get(path, headers={"X-API-Key": bob})
        unknown = client.get(path.replace(job["id"], "f" * 32), headers={"X-API-Key": bob})
        # Exactly as a job that does not exist: nothing tells bob that it does.
        assert theirs.status_code == unknown.status_code == 404
        assert svc.error_of(theirs) == {**svc.error_of(unknown), "message": f"no job {job['id']!r}"}
        assert "a@b.org" not in theirs.text


def test_the_job_table_stores_the_key_name_never_the_key(make_client: Any, svc: Any, tmp_path: Path) -> None:
    import sqlite3

    keys = tmp_path / "keys.txt"
    alice = add_api_key(keys, name="alice")
    client = make_client(metrics={"pii": {}}, api_keys_file=keys, data_dir=tmp_path / "service")
    job = submit(client, alice)
    with sqlite3.connect(tmp_path / "service" / "jobs.sqlite") as db:
        assert db.execute("SELECT owner FROM jobs WHERE id=?", (job["id"],)).fetchone() == ("alice",)
        assert alice not in repr(db.execute("SELECT * FROM jobs").fetchall())
    db.close()
