"""The HTTP API end to end through FastAPI's TestClient: endpoints, limits, errors, micro-batching, jobs.

Served metrics are model-free (``toxicity``'s lexical model, ``pii``, the test ``probe``) except in
the tests marked ``model``. Requests that must wait are held at the service's model lock, not slept.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError
from evalsuite.service.command import serve_app
from evalsuite.service.settings import ServiceSettings
from metrics.base import load_metric

RECORDS = [
    {"id": "a", "prediction": "Thanks, that was really helpful.", "references": ["Thank you."]},
    {"id": "b", "prediction": "You absolute idiot, email me at jo@example.org", "references": ["No."]},
    {"id": "c", "prediction": "Call +1 415 555 2671 or visit 192.168.0.1.", "references": ["Call us."]},
]
SCORE_COLUMNS = ["toxicity_profanity", "pii_email", "pii_phone", "pii_ip_address", "pii_total"]


SERVED = {"toxicity": {"model": "profanity-check"}, "pii": {}}  # as make_client serves them


def scorer_scores(records: list[dict[str, Any]], metrics: list[str]) -> dict[str, list[Any]]:
    """Per-column scores of the same records through the library's Scorer, configured as served."""
    with Scorer({name: SERVED.get(name, {}) for name in metrics}, cache=False, device="cpu") as scorer:
        results = scorer.score(records)
        return {column: results[column].to_list() for column in [*scorer.score_columns, "id"]}


# -- endpoints ------------------------------------------------------------------------------------
def test_health_lists_the_served_metrics(make_client: Any) -> None:
    response = make_client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "metrics": ["toxicity", "pii"]}


def test_v1_metrics_describes_each_served_metric(make_client: Any) -> None:
    response = make_client().get("/v1/metrics")
    assert response.status_code == 200
    described = {entry["name"]: entry for entry in response.json()["metrics"]}
    assert list(described) == ["toxicity", "pii"]
    pii = load_metric("pii")
    assert described["pii"]["columns"] == pii.columns
    assert described["pii"]["detail_columns"] == pii.detail_columns
    assert described["pii"]["fields"] == ["prediction"]
    assert described["pii"]["higher_is_better"] is False
    assert described["pii"]["config_hash"] == pii.config_hash()
    assert described["toxicity"]["config"] == load_metric("toxicity", **SERVED["toxicity"]).config


def test_score_gives_what_the_scorer_gives(make_client: Any) -> None:
    response = make_client().post("/v1/score", json={"records": RECORDS})
    assert response.status_code == 200
    body = response.json()
    expected = scorer_scores(RECORDS, ["toxicity", "pii"])
    assert [row["id"] for row in body["scores"]] == ["a", "b", "c"]
    for column in SCORE_COLUMNS:
        assert [row[column] for row in body["scores"]] == expected[column], column
    assert body["scores"][1]["pii_spans"] == [
        {"type": "email", "start": 32, "end": 46, "text": "jo@example.org"}
    ]
    summary = {row["score"]: row for row in body["summary"]}
    assert summary["pii_email"]["mean"] == pytest.approx(1 / 3)
    assert summary["pii_email"]["n"] == 3
    assert summary["pii_email"]["errors"] == 0
    assert body["errors"] == []
    assert body["config_hashes"] == {
        "toxicity": load_metric("toxicity", **SERVED["toxicity"]).config_hash(),
        "pii": load_metric("pii").config_hash(),
    }
    assert body["model_hashes"] == {}  # neither loads a weights file


def test_score_a_subset_of_metrics_with_a_field_mapping(make_client: Any) -> None:
    records = [{"output": "mail jo@example.org", "lang": "en"}]
    response = make_client().post(
        "/v1/score", json={"records": records, "metrics": ["pii", "pii"], "fields": {"prediction": "output"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["scores"][0]["id"] == "0"  # the record's index when it has none
    assert body["scores"][0]["pii_email"] == 1.0
    assert not any(column.startswith("toxicity") for column in body["scores"][0])
    assert list(body["config_hashes"]) == ["pii"]


def test_skip_lists_invalid_records_and_scores_the_rest(make_client: Any) -> None:
    records = [{"prediction": "fine"}, {"prediction": 42, "id": "bad"}, {"text": "no prediction"}]
    response = make_client().post("/v1/score", json={"records": records, "on_error": "skip"})
    assert response.status_code == 200
    body = response.json()
    assert [row["id"] for row in body["scores"]] == ["0"]
    # The error rows of every run (a file run's .errors.jsonl, Results.errors), located in the request.
    assert body["errors"] == [
        {
            "index": 1,
            "location": "records[1]",
            "field": "prediction",
            "reason": "field 'prediction' must be a string, got int",
            "record": {"prediction": 42, "id": "bad"},
        },
        {
            "index": 2,
            "location": "records[2]",
            "field": "prediction",
            "reason": "missing required field 'prediction' (fields present: text; map one with --field prediction=<name>)",
            "record": {"text": "no prediction"},
        },
    ]
    assert {row["errors"] for row in body["summary"]} == {2}


def test_a_duplicate_id_in_a_request_is_an_invalid_record(make_client: Any, svc: Any) -> None:
    client = make_client(metrics={"pii": {}})
    records = [
        {"id": "a", "prediction": "one"},
        {"id": "b", "prediction": "two"},
        {"id": "a", "prediction": "x"},
    ]
    response = client.post("/v1/score", json={"records": records})
    assert response.status_code == 422
    error = svc.error_of(response)
    assert (error["code"], error["field"]) == ("validation_error", "records[2].id")
    assert "duplicate id 'a'" in error["message"]
    assert "records[0] has it too" in error["message"]

    skipped = client.post("/v1/score", json={"records": records, "on_error": "skip"}).json()
    assert [row["id"] for row in skipped["scores"]] == ["a", "b"]
    [row] = skipped["errors"]
    assert (row["index"], row["location"], row["field"]) == (2, "records[2]", "id")
    assert row["reason"].startswith("duplicate id 'a'")
    assert row["record"] == records[2]


def test_skip_with_every_record_invalid_gives_an_empty_summary(make_client: Any) -> None:
    response = make_client().post("/v1/score", json={"records": [{"text": "x"}], "on_error": "skip"})
    assert response.status_code == 200
    body = response.json()
    assert body["scores"] == []
    assert len(body["errors"]) == 1
    assert {(row["n"], row["mean"], row["errors"]) for row in body["summary"]} == {(0, None, 1)}


def test_a_metric_that_needs_a_corpus_is_not_served(make_client: Any) -> None:
    with pytest.raises(ConfigError, match="needs corpus statistics"):
        make_client(metrics={"bertscore": {"idf": True}}, warm_up=False)


def test_fail_names_the_invalid_field(make_client: Any, svc: Any) -> None:
    records = [{"prediction": "fine"}, {"prediction": "ok", "references": [1]}]
    response = make_client().post("/v1/score", json={"records": records, "metrics": ["pii"]})
    assert response.status_code == 422
    error = svc.error_of(response)
    assert error["code"] == "validation_error"
    assert error["field"] == "records[1].references"
    assert "references" in error["message"]


def test_an_unknown_metric_is_refused_naming_the_served_ones(make_client: Any, svc: Any) -> None:
    response = make_client().post("/v1/score", json={"records": RECORDS, "metrics": ["pii", "bertscore"]})
    assert response.status_code == 422
    error = svc.error_of(response)
    assert error["code"] == "unknown_metric"
    assert error["field"] == "metrics"
    assert "'bertscore'" in error["message"]
    assert "served: toxicity, pii" in error["message"]


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        (b'{"records": [', "body", "not valid JSON"),
        (b"", "body", "must be a JSON object"),
        (b'["records"]', "body", "must be a JSON object"),
        (b'{"records": "all of them"}', "records", "valid list"),
        (b'{"records": []}', "records", "at least 1 item"),
        (b'{"records": [{"prediction": "x"}, "y"]}', "records[1]", "valid dictionary"),
        (b'{"records": [{"prediction": "x"}], "metrics": []}', "metrics", "at least 1 item"),
        (b'{"records": [{"prediction": "x"}], "metrics": "pii"}', "metrics", "valid list"),
        (b'{"records": [{"prediction": "x"}], "on_error": "ignore"}', "on_error", "'fail' or 'skip'"),
        (
            b'{"records": [{"prediction": "x"}], "fields": {"prediction": 3}}',
            "fields.prediction",
            "valid string",
        ),
        (b'{"records": [{"prediction": "x"}], "fields": {"answer": "x"}}', "fields.answer", "unknown field"),
        (b'{"records": [{"prediction": "x"}], "extra": 1}', "extra", "Extra inputs"),
    ],
)
def test_malformed_bodies_get_422_naming_the_field(
    make_client: Any, svc: Any, content: bytes, field: str, message: str
) -> None:
    response = make_client().post("/v1/score", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    error = svc.error_of(response)
    assert error["code"] == "validation_error"
    assert error["field"] == field
    assert message in error["message"]


def test_unknown_routes_and_methods_get_the_error_shape(make_client: Any, svc: Any) -> None:
    client = make_client()
    assert svc.error_of(client.get("/v2/score"))["code"] == "not_found"
    response = client.get("/v1/score")
    assert response.status_code == 405
    assert svc.error_of(response)["code"] == "method_not_allowed"


def test_openapi_documents_the_score_endpoint(make_client: Any) -> None:
    client = make_client()
    schema = client.get("/openapi.json").json()
    assert "/v1/score" in schema["paths"]
    assert {"ScoreRequest", "ScoreResponse", "ErrorBody", "JobInfo"} <= set(schema["components"]["schemas"])
    assert "multipart/form-data" in schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


# -- limits ---------------------------------------------------------------------------------------
def test_a_body_over_the_limit_gets_413_before_it_is_read(make_client: Any, svc: Any) -> None:
    client = make_client(max_body_bytes=1000)
    response = client.post("/v1/score", json={"records": [{"prediction": "x" * 2000}]})
    assert response.status_code == 413
    error = svc.error_of(response)
    assert error == {
        "code": "payload_too_large",
        "message": "the request body is larger than the limit of 1000 bytes",
        "field": "body",
    }


def test_a_chunked_body_is_counted_while_it_is_read(make_client: Any, svc: Any) -> None:
    client = make_client(max_body_bytes=1000)

    def chunks() -> Any:  # no Content-Length: the server only learns the size by reading
        yield b'{"records": [{"prediction": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}]}'

    response = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert svc.error_of(response)["code"] == "payload_too_large"


def test_too_many_records_get_422(make_client: Any, svc: Any) -> None:
    response = make_client(max_records_per_request=2).post("/v1/score", json={"records": RECORDS})
    assert response.status_code == 422
    error = svc.error_of(response)
    assert error["field"] == "records"
    assert "at most 2 records per request, got 3" in error["message"]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"prediction": "x" * 51}, "records[1].prediction"),
        ({"prediction": "ok", "references": ["fine", "y" * 51]}, "records[1].references[1]"),
    ],
)
def test_a_text_over_the_limit_gets_422_naming_it(
    make_client: Any, svc: Any, record: dict[str, Any], field: str
) -> None:
    client = make_client(max_text_chars=50)
    response = client.post(
        "/v1/score", json={"records": [{"prediction": "short"}, record], "on_error": "skip"}
    )
    assert response.status_code == 422
    error = svc.error_of(response)
    assert error["code"] == "validation_error"
    assert error["field"] == field
    assert "51 characters, the limit is 50" in error["message"]


def test_requests_over_the_pending_limit_get_429(make_client: Any, svc: Any) -> None:
    client = make_client(max_pending_requests=1)
    with svc.models_held(client):
        threads, responses = svc.post_in_threads(client, [{"records": RECORDS[:1], "metrics": ["pii"]}])
        svc.wait_until(lambda: svc.served(client).in_flight == 1)
        refused = client.post("/v1/score", json={"records": RECORDS[:1]})
    svc.join_all(threads)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert svc.error_of(refused)["code"] == "rate_limited"
    assert responses[0].status_code == 200
    assert client.post("/v1/score", json={"records": RECORDS[:1]}).status_code == 200  # admitted again


def test_a_request_over_its_time_gets_503_timeout(make_client: Any, svc: Any) -> None:
    client = make_client(request_timeout_s=0.2)
    with svc.models_held(client):
        response = client.post("/v1/score", json={"records": RECORDS[:1]})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    error = svc.error_of(response)
    assert error["code"] == "timeout"
    assert "request timeout (0.2 s)" in error["message"]
    assert client.post("/v1/score", json={"records": RECORDS[:1]}).status_code == 200


# -- errors ---------------------------------------------------------------------------------------
def test_a_bug_in_a_metric_gets_500_without_a_trace_and_is_logged(
    make_client: Any, svc: Any, probe_metric: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(metrics={"probe": {}}, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="evalsuite.service"):
        response = client.post("/v1/score", json={"records": [{"prediction": "boom"}]})
    assert response.status_code == 500
    error = svc.error_of(response)
    assert error["code"] == "internal"
    assert error["message"].startswith("internal server error (incident ")
    assert "exploded" not in response.text
    [logged] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert logged.exc_info is not None  # the traceback stays on the server
    assert "probe exploded" in str(logged.exc_info[1])
    incident = error["message"].removeprefix("internal server error (incident ").rstrip(")")
    assert incident in logged.getMessage()


def test_an_evalsuite_error_in_a_metric_keeps_its_message(
    make_client: Any, svc: Any, probe_metric: Any
) -> None:
    client = make_client(metrics={"probe": {}})
    response = client.post("/v1/score", json={"records": [{"prediction": "unavailable"}]})
    assert response.status_code == 500
    assert svc.error_of(response) == {
        "code": "internal",
        "message": "probe model is not installed: pip install probe-model",
        "field": None,
    }


def test_nan_scores_are_null(make_client: Any, probe_metric: Any) -> None:
    client = make_client(metrics={"probe": {}})
    response = client.post("/v1/score", json={"records": [{"prediction": "nan"}, {"prediction": "four"}]})
    assert response.status_code == 200
    body = response.json()
    assert [row["probe_chars"] for row in body["scores"]] == [None, 4.0]
    assert body["summary"][0]["n"] == 1
    assert body["summary"][0]["mean"] == 4.0


def test_models_are_warmed_at_start(
    tmp_path: Path, probe_metric: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalsuite.service.app import create_app

    seen: list[list[str]] = []
    original = probe_metric.score_batch

    def counting(self: Any, records: Any, rt: Any) -> Any:
        seen.append([record["prediction"] for record in records])
        return original(self, records, rt)

    monkeypatch.setattr(probe_metric, "score_batch", counting)
    app = create_app(ServiceSettings(metrics={"probe": {}}, data_dir=tmp_path, cache=True))
    assert seen == [["The capital of France is Paris."]]
    app.state.served.close()
    seen.clear()
    create_app(ServiceSettings(metrics={"probe": {}}, data_dir=tmp_path, warm_up=False)).state.served.close()
    assert seen == []


# -- micro-batching -------------------------------------------------------------------------------
def concurrent_requests_share_batches(client: Any, svc: Any, metrics: list[str], count: int = 8) -> list[Any]:
    """``count`` concurrent one-record requests, queued while the models are busy, then released."""
    served = svc.served(client)
    bodies = [{"records": [{**RECORDS[i % 3], "id": f"r{i}"}], "metrics": metrics} for i in range(count)]
    with svc.models_held(client):
        threads, responses = svc.post_in_threads(client, bodies)
        svc.wait_until(lambda: all(served.batchers[name].stats.requests == count for name in metrics))
    svc.join_all(threads)
    for name in metrics:
        # At most the first batch ran before the rest arrived: the queued requests share one call.
        assert served.batchers[name].stats.calls <= 2 < count, name
    return responses


def test_concurrent_requests_share_model_batches_and_score_as_alone(make_client: Any, svc: Any) -> None:
    client = make_client(max_wait_ms=1)
    responses = concurrent_requests_share_batches(client, svc, ["toxicity", "pii"])
    expected = scorer_scores([{**RECORDS[i % 3], "id": f"r{i}"} for i in range(8)], ["toxicity", "pii"])
    for i, response in enumerate(responses):
        assert response.status_code == 200
        row = response.json()["scores"][0]
        assert row["id"] == f"r{i}"
        for column in SCORE_COLUMNS:
            assert row[column] == expected[column][i], column


def test_a_failing_request_does_not_fail_the_requests_batched_with_it(
    make_client: Any, svc: Any, probe_metric: Any
) -> None:
    client = make_client(metrics={"probe": {}}, raise_server_exceptions=False)
    served = svc.served(client)
    predictions = ["one", "boom", "three", "four"]
    with svc.models_held(client):
        threads, responses = svc.post_in_threads(
            client, [{"records": [{"prediction": text}]} for text in predictions]
        )
        svc.wait_until(lambda: served.batchers["probe"].stats.requests == 4)
    svc.join_all(threads)
    assert [response.status_code for response in responses] == [200, 500, 200, 200]
    assert [responses[i].json()["scores"][0]["probe_chars"] for i in (0, 2, 3)] == [3.0, 5.0, 4.0]
    assert served.batchers["probe"].stats.failures == 1


@pytest.mark.model
@pytest.mark.slow
def test_concurrent_requests_share_embedding_batches_and_score_as_alone(make_client: Any, svc: Any) -> None:
    client = make_client(metrics={"embedding_similarity": {}}, device="cpu", max_wait_ms=1)
    responses = concurrent_requests_share_batches(client, svc, ["embedding_similarity"])
    records = [{**RECORDS[i % 3], "id": f"r{i}"} for i in range(8)]
    expected = scorer_scores(records, ["embedding_similarity"])["embedding_similarity_cosine"]
    got = [response.json()["scores"][0]["embedding_similarity_cosine"] for response in responses]
    # Other batch shapes than the Scorer's: float32 rounding differs by an ulp or so (the contract
    # suite's batch-invariance tolerance is 1e-5).
    assert got == pytest.approx(expected, abs=1e-6)
    model_hashes = responses[0].json()["model_hashes"]
    assert list(model_hashes) == ["minilm"]
    assert len(model_hashes["minilm"]) == 64


# -- jobs -----------------------------------------------------------------------------------------
def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def wait_for_job(client: Any, svc: Any, job_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def finished() -> bool:
        state.update(client.get(f"/v1/jobs/{job_id}").json())
        return state["state"] in ("succeeded", "failed")

    svc.wait_until(finished, timeout=60)
    return state


def test_an_uploaded_job_runs_and_its_results_stream_back(make_client: Any, svc: Any) -> None:
    client = make_client()
    upload = gzip.compress(jsonl([*RECORDS, {"id": "d", "prediction": 7}]))
    response = client.post(
        "/v1/jobs",
        files={"file": ("answers.jsonl.gz", upload, "application/gzip")},
        data={"metrics": "pii, toxicity", "on_error": "skip"},
    )
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["metrics"] == ["pii", "toxicity"]
    assert job["state"] in ("queued", "running")
    done = wait_for_job(client, svc, job["id"])
    assert done["state"] == "succeeded", done
    assert done["errors"] == 1
    results = client.get(f"/v1/jobs/{job['id']}/results")
    assert results.status_code == 200
    assert results.headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in results.text.splitlines()]
    assert [row["id"] for row in rows] == ["a", "b", "c"]
    expected = scorer_scores(RECORDS, ["toxicity", "pii"])
    assert [row["toxicity_profanity"] for row in rows] == expected["toxicity_profanity"]


def test_a_job_over_a_server_path_needs_an_allowed_root(make_client: Any, svc: Any, tmp_path: Path) -> None:
    allowed = tmp_path / "data"
    allowed.mkdir()
    (allowed / "answers.jsonl").write_bytes(jsonl(RECORDS))
    (tmp_path / "secret.jsonl").write_bytes(jsonl(RECORDS))
    client = make_client(allowed_paths=(allowed,))
    accepted = client.post("/v1/jobs", json={"path": str(allowed / "answers.jsonl"), "metrics": ["pii"]})
    assert accepted.status_code == 202
    assert wait_for_job(client, svc, accepted.json()["id"])["state"] == "succeeded"
    for path in (tmp_path / "secret.jsonl", allowed / ".." / "secret.jsonl"):
        refused = client.post("/v1/jobs", json={"path": str(path)})
        assert refused.status_code == 422
        assert svc.error_of(refused)["field"] == "path"


def test_job_results_before_success_get_409_and_unknown_jobs_404(make_client: Any, svc: Any) -> None:
    client = make_client()
    with svc.models_held(client):
        job = client.post("/v1/jobs", files={"file": ("a.jsonl", jsonl(RECORDS))}).json()
        early = client.get(f"/v1/jobs/{job['id']}/results")
    assert early.status_code == 409
    assert svc.error_of(early)["code"] == "conflict"
    assert wait_for_job(client, svc, job["id"])["state"] == "succeeded"
    for path in ("/v1/jobs/nope", "/v1/jobs/nope/results"):
        response = client.get(path)
        assert response.status_code == 404
        assert svc.error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    ("request_options", "status", "code", "field"),
    [
        ({"files": {"file": ("a.txt", b"x")}}, 422, "validation_error", "file"),
        (
            {"files": {"file": ("a.jsonl", b"{}\n")}, "data": {"metrics": "bleu"}},
            422,
            "unknown_metric",
            "metrics",
        ),
        (
            {"files": {"file": ("a.jsonl", b"{}\n")}, "data": {"on_error": "later"}},
            422,
            "validation_error",
            "on_error",
        ),
        (
            {"files": {"file": ("a.jsonl", b"{}\n")}, "data": {"fields": "[1]"}},
            422,
            "validation_error",
            "fields",
        ),
        (
            {"files": {"file": ("a.jsonl", b"{}\n")}, "data": {"fields": '{"answer": "x"}'}},
            422,
            "validation_error",
            "fields.answer",
        ),
        ({"json": {"path": "/x.jsonl", "fields": {"answer": "x"}}}, 422, "validation_error", "fields.answer"),
        ({"files": {"upload": ("a.jsonl", b"{}\n")}}, 422, "validation_error", "file"),
        ({"files": {"file": ("a.jsonl", b"{}\n" * 400)}}, 413, "payload_too_large", "body"),
        ({"content": b"a,b\n", "headers": {"content-type": "text/csv"}}, 415, "unsupported_media_type", None),
        ({"json": {"path": "/x.jsonl", "metrics": "pii"}}, 422, "validation_error", "metrics"),
    ],
)
def test_bad_job_submissions_are_refused(
    make_client: Any, svc: Any, request_options: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    client = make_client(max_upload_bytes=1000)
    response = client.post("/v1/jobs", **request_options)
    assert response.status_code == status
    error = svc.error_of(response)
    assert (error["code"], error["field"]) == (code, field)


# -- telemetry ------------------------------------------------------------------------------------
def test_prometheus_metrics(make_client: Any) -> None:
    client = make_client()
    client.post("/v1/score", json={"records": RECORDS})
    client.post("/v1/score", json={"records": RECORDS, "metrics": ["nope"]})
    client.get("/v1/jobs/some-id")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'evalsuite_requests_total{method="POST",path="/v1/score",status="200"} 1.0' in text
    assert 'evalsuite_requests_total{method="GET",path="/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert 'evalsuite_request_seconds_count{path="/v1/score"} 2.0' in text
    assert 'evalsuite_batch_records_count{metric="toxicity"} 1.0' in text
    assert 'evalsuite_batch_records_sum{metric="pii"} 3.0' in text
    assert "evalsuite_queue_depth 0.0" in text
    assert 'evalsuite_errors_total{code="unknown_metric"} 1.0' in text
    assert 'evalsuite_jobs{state="queued"} 0.0' in text


# -- the command ----------------------------------------------------------------------------------
def test_serve_builds_the_app_and_binds_loopback_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append({"app": app, **options}))
    result = CliRunner().invoke(serve_app, ["--metrics", "pii", "--data-dir", str(tmp_path), "--no-cache"])
    assert result.exit_code == 0, result.output
    [call] = calls
    assert (call["host"], call["port"]) == ("127.0.0.1", 8080)
    assert call["app"].state.served.names == ["pii"]
    call["app"].state.served.close()


def test_serve_with_an_unknown_metric_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve_app, ["--metrics", "pii,bleurt", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown metric 'bleurt'" in result.output


def test_serve_without_the_serve_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    result = CliRunner().invoke(serve_app, ["--metrics", "pii"])
    assert result.exit_code == 2
    assert "pip install 'evalsuite[serve]'" in result.output
    assert "fastapi" in result.output


def test_serve_refuses_bad_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve_app, ["--port", "70000", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--port" in result.output


def test_nan_helper_is_not_fooled_by_numpy() -> None:
    import numpy as np

    from evalsuite.service.scoring import _json_value

    assert _json_value({"a": [np.float32(0.5), np.nan, math.inf]}) == {"a": [0.5, None, None]}


# -- server paths that are not file names ---------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        '"{root}/a\\u0000b.jsonl"',  # NUL
        '"{root}/a\\ud800.jsonl"',  # a lone surrogate: valid JSON, not a file name
        '"{root}/' + "n" * 300 + '.jsonl"',  # a name longer than NAME_MAX
        '"' + "/a" * 3000 + '"',  # longer than PATH_MAX
        '""',
    ],
)
def test_a_job_path_that_is_not_a_file_name_gets_422_naming_path(
    make_client: Any, svc: Any, tmp_path: Path, path: str
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    client = make_client(allowed_paths=(root,))
    body = '{"path": ' + path.replace("{root}", str(root)) + "}"
    response = client.post("/v1/jobs", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422
    error = svc.error_of(response)
    assert (error["code"], error["field"]) == ("validation_error", "path")


def test_a_job_body_that_is_not_utf8_gets_422(make_client: Any, svc: Any) -> None:
    response = make_client().post(
        "/v1/jobs", content=b'{"path": "\xff\xfe.jsonl"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert svc.error_of(response)["field"] == "body"


# -- lone surrogates ------------------------------------------------------------------------------
def post_raw(client: Any, body: str) -> Any:
    """POST a JSON text as written (``\\ud800`` escapes stay escapes: no encoder refuses them)."""
    return client.post("/v1/score", content=body.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ('{"prediction": "x \\ud800"}', "records[0].prediction"),
        ('{"id": "x \\udfff", "prediction": "fine"}', "records[0].id"),
        ('{"prediction": "fine", "references": ["ok", "\\ud800"]}', "records[0].references"),
    ],
)
def test_a_lone_surrogate_gets_422_naming_the_field(
    make_client: Any, svc: Any, record: str, field: str
) -> None:
    response = post_raw(make_client(), '{"records": [' + record + "]}")
    assert response.status_code == 422
    error = svc.error_of(response)
    assert (error["code"], error["field"]) == ("validation_error", field)
    assert "lone surrogate" in error["message"]


def test_a_lone_surrogate_is_skipped_as_one_record_error(make_client: Any, svc: Any) -> None:
    body = '{"on_error": "skip", "records": [{"id": "x \\ud800", "prediction": "fine"}, {"id": "ok", "prediction": "good"}]}'
    response = post_raw(make_client(), body)
    assert response.status_code == 200
    result = response.json()
    assert [row["id"] for row in result["scores"]] == ["ok"]
    [error] = result["errors"]
    assert (error["index"], error["location"], error["field"]) == (0, "records[0]", "id")
    assert error["record"]["id"] == "x \\ud800"  # the surrogate as visible text: UTF-8 cannot carry it


def test_a_skipped_record_is_echoed_as_json_can_carry_it(make_client: Any) -> None:
    body = '{"on_error": "skip", "records": [{"text": NaN, "meta": {"k\\ud800": "v\\udfff"}}, {"prediction": "ok"}]}'
    response = post_raw(make_client(), body)
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert (error["location"], error["field"]) == ("records[0]", "prediction")
    assert error["record"] == {"text": None, "meta": {"k\\ud800": "v\\udfff"}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"records": [{"\\ud800": "x"}]}', "records[0].prediction"),  # quoted in "fields present"
        ('{"records": [{"prediction": "x"}], "fields": {"\\ud800": "x"}}', "fields.\\ud800"),
        ('{"records": [{"prediction": "x"}], "metrics": ["\\ud800"]}', "metrics"),
        ('{"records": [{"prediction": "x"}], "\\ud800": 1}', "body"),
    ],
)
def test_an_error_quoting_a_lone_surrogate_is_still_json(
    make_client: Any, svc: Any, body: str, field: str
) -> None:
    response = post_raw(make_client(), body)
    assert response.status_code == 422
    assert svc.error_of(response)["field"] == field
    response.content.decode("utf-8")  # valid UTF-8 throughout


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_a_job_with_a_lone_surrogate_line_skips_it_or_fails_clearly(
    make_client: Any, svc: Any, on_error: str
) -> None:
    client = make_client(metrics={"pii": {}})
    lines = (
        b'{"id": "a", "prediction": "fine"}\n'
        b'{"id": "b", "prediction": "x \\ud800"}\n'
        b'{"id": "c", "prediction": "good"}\n'
    )
    job = client.post("/v1/jobs", files={"file": ("a.jsonl", lines)}, data={"on_error": on_error}).json()
    done = wait_for_job(client, svc, job["id"])
    if on_error == "skip":
        assert (done["state"], done["errors"], done["records_done"]) == ("succeeded", 1, 3)
        rows = [json.loads(line) for line in client.get(f"/v1/jobs/{job['id']}/results").text.splitlines()]
        assert [row["id"] for row in rows] == ["a", "c"]
    else:
        assert done["state"] == "failed"
        assert done["error"].startswith(
            "a.jsonl:2: field 'prediction' is not valid Unicode: a lone surrogate"
        )


def test_a_judge_that_cannot_answer_a_record_is_a_named_error(make_client: Any, svc: Any) -> None:
    import math

    from evalsuite.testing import FakeChatServer, chat_completion

    def judge(body: dict[str, Any]) -> Any:
        if "refuse me" in body["messages"][-1]["content"]:
            return chat_completion("I won't rate that.")
        return chat_completion("yes", [{"yes": math.log(0.7), "no": math.log(0.3)}])

    records = [
        {"id": "ok", "source": "s", "prediction": "fine"},
        {"id": "x", "source": "s", "prediction": "refuse me"},
    ]
    with FakeChatServer(judge) as server:
        config = {"kind": "binary", "base_url": server.base_url, "model": "m", "retries": 0}
        client = make_client(metrics={"llm_judge": config})
        skipped = client.post("/v1/score", json={"records": records, "on_error": "skip"}).json()
        failed = client.post("/v1/score", json={"records": records})
    assert [row["id"] for row in skipped["scores"]] == ["ok"]
    assert skipped["scores"][0]["llm_judge_probability"] == pytest.approx(0.7)
    [error] = skipped["errors"]
    assert error["location"] == "records[1]"
    assert error["field"] == "llm_judge_probability"
    assert "I won't rate that." in error["reason"]
    assert {row["errors"] for row in skipped["summary"]} == {1}
    assert failed.status_code == 422
    assert svc.error_of(failed)["field"] == "records[1].llm_judge_probability"
