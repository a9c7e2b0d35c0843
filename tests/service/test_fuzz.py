"""Property-based tests of the request bodies: whatever a client with a valid key sends, the answer is
a 200 accounting for every record, or an error of the documented shape; never a 500.

Texts include lone surrogates (sent as ``\\ud800`` JSON escapes), control characters and NUL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evalsuite.service.app import create_app
from evalsuite.service.auth import add_api_key
from evalsuite.service.settings import ServiceSettings

EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CANONICAL = ["id", "prompt", "source", "prediction", "references", "samples", "sample_logprobs"]

# Every code point, lone surrogates included (hypothesis leaves them out unless told), and the
# strings that broke services before, drawn often.
NASTY = ["", " ", "\x00", "\ufeff", "\u202e", "a" * 40, "a@b.org", "0"]
any_texts = st.text(st.characters(exclude_categories=()), max_size=30)
with_surrogate = st.builds(
    lambda before, surrogate, after: before + surrogate + after,
    st.text(max_size=5),
    st.characters(categories=["Cs"]),
    st.text(max_size=5),
)
texts = any_texts | st.sampled_from(NASTY) | with_surrogate
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | texts  # floats: NaN and infinities too
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
plausible_records = st.fixed_dictionaries(
    {"prediction": texts},
    optional={
        "id": texts | st.integers(),
        "references": st.lists(texts, max_size=3) | texts,
        "samples": st.lists(texts, max_size=3),
        "meta": json_values,
    },
)
plausible_bodies = st.fixed_dictionaries(  # well formed, so scoring and skipping are reached
    {
        "records": st.lists(plausible_records, min_size=1, max_size=6),
        "on_error": st.sampled_from(["skip", "fail"]),
        "metrics": st.sampled_from([None, ["pii"], ["toxicity"], ["pii", "toxicity"]]),
    }
)
wild_bodies = st.fixed_dictionaries(
    {"records": st.lists(plausible_records | json_values, max_size=6)},
    optional={
        "on_error": st.sampled_from(["skip", "fail"]) | json_values,
        "metrics": json_values,
        "fields": st.dictionaries(st.sampled_from(CANONICAL) | texts, texts, max_size=2) | json_values,
    },
)
score_bodies = plausible_bodies | wild_bodies | json_values


@pytest.fixture(scope="module")
def keyed_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for every example (a key required; server-side paths allowed under one root)."""
    root = tmp_path_factory.mktemp("fuzz")
    key = add_api_key(root / "keys.txt", name="fuzz")
    (root / "data").mkdir()
    app = create_app(
        ServiceSettings(
            metrics={"pii": {}, "toxicity": {}},
            api_keys_file=root / "keys.txt",
            data_dir=root / "service",
            allowed_paths=(root / "data",),
            cache=False,
            max_records_per_request=5,
            max_text_chars=25,
        )
    )
    with TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": key}) as client:
        yield client


def check_error_shape(response: Any) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "field"}
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["field"] is None or isinstance(error["field"], str)
    return error


def check_score_answer(response: Any, sent: Any) -> None:
    response.content.decode("utf-8")  # valid UTF-8, whatever was echoed
    if response.status_code != 200:
        event(f"{response.status_code} {check_error_shape(response)['code']}")
        return
    body = response.json()
    assert set(body) == {"scores", "summary", "errors", "config_hashes", "model_hashes"}
    count = len(sent["records"])
    # Every record sent is exactly one row or one error.
    assert len(body["scores"]) + len(body["errors"]) == count
    indices = [error["index"] for error in body["errors"]]
    assert len(set(indices)) == len(indices)
    assert all(0 <= index < count for index in indices)
    if sent.get("on_error", "fail") == "fail":
        assert body["errors"] == []
    event(f"200 with {len(body['scores'])} scored, {len(body['errors'])} skipped")


def post_json_text(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode("ascii"), headers={"content-type": "application/json"})


@EXAMPLES
@given(content=st.binary(max_size=300))
def test_any_bytes_get_an_error_of_the_documented_shape(keyed_client: TestClient, content: bytes) -> None:
    response = keyed_client.post("/v1/score", content=content, headers={"content-type": "application/json"})
    if response.status_code == 200:  # the bytes happened to be a valid request
        check_score_answer(response, json.loads(content))
    else:
        check_error_shape(response)


@EXAMPLES
@given(body=score_bodies)
def test_any_json_gets_200_for_every_record_or_an_error(keyed_client: TestClient, body: Any) -> None:
    # ensure_ascii: lone surrogates travel as \\ud800 escapes, as a JavaScript client sends them.
    response = post_json_text(keyed_client, "/v1/score", json.dumps(body))
    check_score_answer(response, body)


@EXAMPLES
@given(path=texts | st.text(st.sampled_from("/.\x00a\ud800"), max_size=40), metrics=json_values)
def test_any_job_path_is_refused_or_accepted_never_a_500(
    keyed_client: TestClient, path: str, metrics: Any
) -> None:
    response = post_json_text(keyed_client, "/v1/jobs", json.dumps({"path": path, "metrics": metrics}))
    error = check_error_shape(response)
    assert error["field"] in ("path", "metrics", "body") or error["field"].startswith("metrics[")


def test_the_fuzzed_app_really_scores(keyed_client: TestClient, tmp_path: Path) -> None:
    """The properties above are not vacuous: a valid body does score."""
    response = keyed_client.post(
        "/v1/score", json={"records": [{"prediction": "mail a@b.org"}], "on_error": "skip"}
    )
    assert response.status_code == 200
    assert response.json()["scores"][0]["pii_email"] == 1.0
