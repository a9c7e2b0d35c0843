"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1 (canned replies).

Checks that matter to users: probability-weighted scores equal an independent computation from the
returned log-probabilities; 429/503 with Retry-After are retried and counted; timeouts and malformed
replies become record errors with the raw reply; the concurrency bound holds; a cached re-run sends
no request.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError, InputError
from evalsuite.judges import JudgeRequest, OpenAICompatibleBackend
from evalsuite.registry import ScoreFailure
from evalsuite.retry import retry_after_seconds
from evalsuite.testing import FakeChatServer, chat_completion, float_tolerance

TOLERANCE = float_tolerance("float64", style="approx")
RECORDS = [
    {"id": f"q{i}", "prompt": f"What is {i} + {i}?", "prediction": f"It is {2 * i}."} for i in range(6)
]
# Log-probabilities of the rating tokens (and two tokens that are not ratings), per record.
RATING_LOGPROBS = [
    {"4": math.log(0.5), "5": math.log(0.3), " 3": math.log(0.1), "The": math.log(0.05), "**": -5.0},
    {"2": math.log(0.7), "1": math.log(0.2), "3": math.log(0.05)},
]


def _rating_server_reply(body: dict[str, Any]) -> dict[str, Any]:
    """Record i (read from its prompt) gets the canned distribution i % 2."""
    prompt = body["messages"][-1]["content"]
    index = int(prompt.split("What is ")[1].split(" ")[0])
    top = RATING_LOGPROBS[index % 2]
    return chat_completion(next(iter(top)).strip(), [top], prompt_tokens=40, completion_tokens=1)


def _judge(server: FakeChatServer, **config: Any) -> dict[str, dict[str, Any]]:
    return {
        "llm_judge": {
            "base_url": server.base_url,
            "model": "canned",
            "kind": "direct",
            "retries": 0,
            **config,
        }
    }


def _expected_weighted(top: dict[str, float]) -> tuple[float, float]:
    """G-Eval by hand: p(k) over the tokens that are ratings 1..5 (spaces ignored), renormalised."""
    ratings = {int(token.strip()): math.exp(lp) for token, lp in top.items() if token.strip() in "12345"}
    total = sum(ratings.values())
    weighted = sum(rating * p / total for rating, p in ratings.items())
    return float(max(ratings, key=ratings.__getitem__)), weighted


def test_weighted_scores_equal_an_independent_computation_from_the_logprobs() -> None:
    with FakeChatServer(_rating_server_reply) as server:
        results = Scorer(_judge(server), cache=False).score(RECORDS)
    for i in range(len(RECORDS)):
        rating, weighted = _expected_weighted(RATING_LOGPROBS[i % 2])
        assert results["llm_judge_rating"][i] == rating
        assert results["llm_judge_weighted"][i] == pytest.approx(weighted, **TOLERANCE)
    body = server.requests[0]
    assert body["model"] == "canned"
    assert body["logprobs"] is True
    assert body["top_logprobs"] == 20
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 1
    assert body["messages"][0]["role"] == "system"
    assert "1 (very poor) to 5" in body["messages"][1]["content"]


def test_the_api_key_is_read_from_the_named_variable_and_not_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test-123")
    with FakeChatServer(_rating_server_reply) as server:
        scorer = Scorer(_judge(server, api_key_env="MY_JUDGE_KEY"), cache=False)
        scorer.score(RECORDS[:1])
    assert server.headers[0]["Authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in str(scorer.metrics[0].config)


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limits_and_unavailable_are_retried_after_retry_after_and_counted(status: int) -> None:
    calls = {"n": 0}

    def flaky(body: dict[str, Any]) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            return (status, {"Retry-After": "0.2"}, '{"error": "slow down"}')
        return _rating_server_reply(body)

    backend = OpenAICompatibleBackend("http://unused/v1", "canned", retries=3, backoff=0.0, concurrency=1)
    with FakeChatServer(flaky) as server:
        backend.url = server.base_url + "/chat/completions"
        started = time.monotonic()
        [reply] = backend.complete([_request(RECORDS[0]["prompt"])])
        waited = time.monotonic() - started
    assert not isinstance(reply, ScoreFailure)
    assert backend.stats.retries == 2
    assert backend.stats.requests == 3
    assert backend.stats.failures == 0
    assert waited >= 0.4  # two waits of the Retry-After, though the back-off alone asks for none


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("1.5") == 1.5
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (retry_after_seconds(soon) or 0) <= 31
    assert retry_after_seconds("later") is None
    assert retry_after_seconds("") is None


def test_a_server_error_after_the_retries_is_a_record_error_naming_the_record() -> None:
    with FakeChatServer(lambda body: (503, {"Retry-After": "0"}, "upstream down")) as server:
        scorer = Scorer(_judge(server, retries=1), cache=False)
        with pytest.raises(InputError) as failed:
            scorer.score(RECORDS[:2])
        results = scorer.score(RECORDS[:2], on_error="skip")
    assert "record 0" in str(failed.value)
    assert "HTTP 503 (after 1 retries)" in str(failed.value)
    assert "upstream down" in str(failed.value)
    assert len(results) == 0
    assert [row["location"] for row in results.errors] == ["record 0", "record 1"]
    assert results.errors[0]["field"] == "llm_judge_rating"
    assert results.errors[0]["record"]["id"] == "q0"


def test_timeouts_become_record_errors() -> None:
    with FakeChatServer(_rating_server_reply, delay=1.0) as server:
        results = Scorer(_judge(server, timeout=0.2), cache=False).score(RECORDS[:2], on_error="skip")
    assert len(results.errors) == 2
    assert "did not answer within 0.2 s" in results.errors[0]["reason"]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((200, {}, "<html>gateway</html>"), "not a valid chat completion"),
        ((200, {}, '{"choices": []}'), "not a valid chat completion"),
        (chat_completion("I cannot help with rating this."), "no answer among the labels"),
        ({"choices": [{"message": {"content": None, "refusal": "I can't do that"}}]}, "refused"),
    ],
    ids=["not-json", "no-choice", "no-rating", "refusal"],
)
def test_malformed_replies_become_record_errors_with_the_raw_reply(reply: Any, reason: str) -> None:
    with FakeChatServer(lambda body: reply) as server:
        results = Scorer(_judge(server), cache=False).score(RECORDS[:1], on_error="skip")
    [error] = results.errors
    assert reason in error["reason"]
    raw = reply[2] if isinstance(reply, tuple) else None
    assert raw is None or raw in error["reason"]


def test_a_reply_without_logprobs_is_read_from_its_text() -> None:
    with FakeChatServer(lambda body: chat_completion("Rating: 4. It is correct.")) as server:
        results = Scorer(_judge(server, logprobs=False), cache=False).score(RECORDS[:1])
    assert "logprobs" not in server.requests[0]
    assert results["llm_judge_rating"][0] == 4.0
    assert results["llm_judge_weighted"][0] == 4.0


def test_the_concurrency_bound_holds() -> None:
    with FakeChatServer(_rating_server_reply, delay=0.15) as server:
        backend = OpenAICompatibleBackend(server.base_url, "canned", concurrency=3)
        replies = backend.complete([_request(f"What is {i} + {i}?") for i in range(12)])
    assert all(not isinstance(reply, ScoreFailure) for reply in replies)
    assert server.max_in_flight == 3


def test_a_cached_rerun_sends_no_request(tmp_path: Any) -> None:
    cache = tmp_path / "scores.sqlite"
    with FakeChatServer(_rating_server_reply) as server:
        first = Scorer(_judge(server), cache=cache).score(RECORDS)
        sent = len(server.requests)
        again = Scorer(_judge(server), cache=cache).score(RECORDS)
        assert len(server.requests) == sent == len(RECORDS)
        # A new template is a new judge: no verdict is reused.
        custom = {"input": "Q: {prompt}\nA: {prediction}", "question": "Rate it 1 to {scale}."}
        Scorer(_judge(server, template=custom), cache=cache).score(RECORDS[:1])
        assert len(server.requests) == sent + 1
    assert first["llm_judge_weighted"].to_list() == again["llm_judge_weighted"].to_list()


def test_failed_records_are_not_cached_so_a_rerun_retries_them(tmp_path: Any) -> None:
    cache = tmp_path / "scores.sqlite"
    answers = iter([(500, {}, "boom"), *[_rating_server_reply] * 10])

    def respond(body: dict[str, Any]) -> Any:
        answer = next(answers)
        return answer(body) if callable(answer) else answer

    with FakeChatServer(respond) as server:
        first = Scorer(_judge(server, concurrency=1), cache=cache).score(RECORDS[:3], on_error="skip")
        second = Scorer(_judge(server, concurrency=1), cache=cache).score(RECORDS[:3], on_error="skip")
    assert len(first.errors) == 1
    assert len(first) == 2
    assert not second.errors
    assert len(second) == 3
    assert len(server.requests) == 4  # 3, then only the failed record again


def test_http_judge_needs_a_model_name_and_an_http_url() -> None:
    with pytest.raises(ConfigError, match="model=NAME"):
        Scorer({"llm_judge": {"base_url": "http://127.0.0.1:1/v1"}})
    with pytest.raises(ConfigError, match="http"):
        OpenAICompatibleBackend("127.0.0.1:8000", "m")


def _request(prompt: str) -> JudgeRequest:
    return JudgeRequest(({"role": "user", "content": prompt},), 1, ("1", "2", "3", "4", "5"))


def test_a_file_run_stopped_by_a_judge_failure_resumes_without_asking_again(tmp_path: Any) -> None:
    import json

    source = tmp_path / "answers.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in RECORDS))
    out = tmp_path / "answers.scores.jsonl"
    broken = {"q4"}

    def respond(body: dict[str, Any]) -> Any:
        if "What is 4 + 4?" in body["messages"][-1]["content"] and broken:
            return (502, {}, "bad gateway")
        return _rating_server_reply(body)

    with FakeChatServer(respond) as server:
        with pytest.raises(InputError, match=r"answers.jsonl:5: .*HTTP 502"):
            Scorer(_judge(server), cache=False, chunk_size=2).score_file(source, out)
        first = len(server.requests)
        broken.clear()
        run = Scorer(_judge(server), cache=False, chunk_size=2).score_file(source, out)
    assert first == 6  # two committed chunks, then the chunk with the failure
    assert len(server.requests) == first + 2  # only the unfinished chunk is asked again
    assert run.records == len(RECORDS)
    assert run.errors == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [r["id"] for r in RECORDS]


def test_skip_mode_quarantines_judge_failures_in_the_errors_file(tmp_path: Any) -> None:
    import json

    source = tmp_path / "answers.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in RECORDS))
    out = tmp_path / "answers.scores.jsonl"

    def respond(body: dict[str, Any]) -> Any:
        if "What is 2 + 2?" in body["messages"][-1]["content"]:
            return chat_completion("As an AI, I cannot rate answers.")
        return _rating_server_reply(body)

    with FakeChatServer(respond) as server:
        run = Scorer(_judge(server), cache=False, chunk_size=4).score_file(source, out, on_error="skip")
    assert run.records == len(RECORDS) - 1
    assert run.errors == 1
    assert run.errors_file is not None
    [error] = [json.loads(line) for line in run.errors_file.read_text().splitlines()]
    assert error["location"].endswith("answers.jsonl:3")
    assert "As an AI, I cannot rate answers." in error["reason"]
    assert error["record"]["id"] == "q2"
    assert len(out.read_text().splitlines()) == len(RECORDS) - 1
