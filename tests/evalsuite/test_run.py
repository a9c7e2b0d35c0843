"""The unit of work (evalsuite.run): one path for every caller, hooks instead of subclasses, stats
returned rather than written into the caller, and a file read once before scoring."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError, InputError
from evalsuite.records import RawRecord, file_sha256, iter_chunks
from evalsuite.registry import Metric, Scores
from evalsuite.run import Hooks, RunStats, Work, WorkSettings, survey_input
from evalsuite.runtime import Runtime


class Length(Metric):
    """A model-free metric that records, per call, whether the caller's lock was held."""

    name = "length"
    fields = ("prediction",)
    score_names = ("chars",)
    lock: ClassVar[threading.Lock | None] = None
    calls: ClassVar[list[tuple[int, bool]]] = []

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        held = self.lock.locked() if self.lock is not None else False
        Length.calls.append((len(records), held))
        return {"chars": [float(len(record["prediction"])) for record in records]}


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    Length.calls = []
    Length.lock = None


def raw(records: list[Any]) -> list[RawRecord]:
    return [record for chunk in iter_chunks(records, chunk_size=100) for record in chunk]


def work(cache: Any = None) -> Work:
    return Work.build([Length()], WorkSettings(device="cpu", cache=False), cache)


def test_a_chunk_gives_rows_errors_and_its_own_stats() -> None:
    result = work().run(
        raw([{"prediction": "abc"}, {"prediction": 3}, {"prediction": "de", "id": "x"}]), "skip"
    )
    assert [(row["id"], row["length_chars"]) for row in result.rows] == [("0", 3.0), ("x", 2.0)]
    (error,) = result.errors
    assert set(error) == {"index", "location", "field", "reason", "record"}
    assert (error["index"], error["location"], error["field"]) == (1, "record 1", "prediction")
    assert result.stats == RunStats(cache_hits=0, cache_misses=2)


def test_fail_mode_raises_naming_the_record_and_field() -> None:
    with pytest.raises(InputError, match="record 1") as caught:
        work().run(raw([{"prediction": "abc"}, {"text": "no prediction"}]), "fail")
    assert caught.value.field == "prediction"


def test_hooks_hold_the_lock_around_model_work_and_cancel_before_it(tmp_path: Path) -> None:
    lock = threading.Lock()
    Length.lock = lock
    w = work()
    w.run(raw([{"prediction": "abc"}]), "fail", Hooks(model_lock=lock))
    assert Length.calls == [(1, True)]

    class StopError(Exception):
        pass

    def stop() -> None:
        raise StopError

    with pytest.raises(StopError):
        w.run(raw([{"prediction": "xyz"}]), "fail", Hooks(check_cancelled=stop))
    assert len(Length.calls) == 1  # cancelled before the model ran


def test_stats_are_returned_not_written_into_a_shared_scorer(tmp_path: Path) -> None:
    from evalsuite.cache import ScoreCache

    with ScoreCache(tmp_path / "cache.sqlite") as cache:
        w = work(cache)
        first = w.run(raw([{"prediction": "abc"}, {"prediction": "abc", "id": "b"}]), "fail")
        second = w.run(raw([{"prediction": "abc"}]), "fail")
        assert (first.stats.cache_hits, first.stats.cache_misses) == (0, 1)  # equal inputs scored once
        assert (second.stats.cache_hits, second.stats.cache_misses) == (1, 0)
        assert Length.calls == [(1, False)]
        total = RunStats()
        total.add(first.stats)
        total.add(second.stats)
        assert (total.cache_hits, total.cache_misses) == (1, 1)


def test_a_shared_cache_is_used_and_left_open_by_the_scorer(tmp_path: Path) -> None:
    from evalsuite.cache import ScoreCache

    with ScoreCache(tmp_path / "cache.sqlite") as cache:
        with Scorer([Length()], cache=cache) as scorer:
            scorer.score([{"prediction": "abc"}])
            assert scorer.cache is cache
        with Scorer([Length()], cache=cache) as again:  # the cache is still open for the next one
            again.score([{"prediction": "abc"}])
            assert (again.cache_hits, again.cache_misses) == (1, 0)


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_a_file_is_read_once_before_scoring_for_hash_count_and_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_error: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"prediction": "x" * i}) + "\n" for i in range(1, 8)))
    opened: list[str] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == source:
            opened.append(str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    counted: list[int] = []
    with Scorer([Length()], cache=False, chunk_size=3) as scorer:
        run = scorer.score_file(source, tmp_path / "out.jsonl", on_error=on_error, on_count=counted.append)  # type: ignore[arg-type]
    assert len(opened) == 2  # the survey (hash, count, validation) and the scoring pass
    assert counted == [7]
    assert run.manifest["input"]["sha256"] == file_sha256(source)
    assert run.manifest["input"]["records"] == 7


def test_the_survey_hashes_what_it_validates_and_stops_at_a_bad_record_in_fail_mode(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"prediction": "a"}\n{"prediction": 5}\n')
    w = work()
    facts = survey_input(w, source, fields=None, on_error="skip", chunk_size=1, hooks=Hooks())
    assert (facts.records, facts.sha256) == (2, hashlib.sha256(source.read_bytes()).hexdigest())
    with pytest.raises(InputError, match=r"in\.jsonl:2"):
        survey_input(w, source, fields=None, on_error="fail", chunk_size=1, hooks=Hooks())
    assert Length.calls == []  # nothing was scored


def test_file_run_results_carry_the_real_error_rows(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"prediction": "a"}\n{"prediction": 5, "id": "bad"}\n')
    with Scorer([Length()], cache=False) as scorer:
        run = scorer.score_file(source, tmp_path / "out.jsonl", on_error="skip")
    assert run.errors == 1
    assert [(error["location"], error["field"]) for error in run.results.errors] == [
        (f"{source}:2", "prediction")
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"chunk_size": 0}, "chunk_size must be a positive integer, got 0"),
        ({"chunk_size": True}, "chunk_size must be a positive integer, got True"),
    ],
)
def test_settings_are_checked_with_one_message_format(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkSettings(**settings)


def test_on_error_is_checked_with_one_message_format() -> None:
    with pytest.raises(ConfigError, match="on_error must be 'fail' or 'skip', got 'ignore'"):
        Scorer([Length()], cache=False).score([{"prediction": "a"}], on_error="ignore")  # type: ignore[arg-type]
