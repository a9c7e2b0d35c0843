"""The served metrics: built and warmed once, each behind a micro-batcher, all under one model lock.

Knows nothing of HTTP: requests arrive as plain records and leave as rows, a summary and hashes;
problems are raised as evalsuite errors (:class:`InputError` naming the field,
:class:`UnknownMetricError`, :class:`ServiceOverloadedError`, :class:`TimeoutError`) for the
caller to translate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import polars as pl

from evalsuite.api import Scorer, build_metrics
from evalsuite.cache import ScoreCache
from evalsuite.errors import ConfigError, EvalsuiteError, InputError, UnknownMetricError
from evalsuite.records import CANONICAL_FIELDS, RawRecord, error_entry, iter_chunks
from evalsuite.registry import Metric, ScoreFailure
from evalsuite.results import summarize
from evalsuite.run import OnError, Validated, Work, check_on_error
from evalsuite.runtime.microbatch import FairLock, MicroBatcher
from evalsuite.service.settings import ServiceSettings

__all__ = ["ServedMetrics", "ServiceOverloadedError", "check_field_mapping", "record_cost"]

Row = dict[str, Any]

# Every canonical field filled, so any metric can score it at start (loading its models).
WARM_UP_RECORD: dict[str, Any] = {
    "id": "warm-up",
    "prompt": "What is the capital of France?",
    "source": "Paris is the capital of France.",
    "prediction": "The capital of France is Paris.",
    "references": ["Paris is the capital of France."],
    "samples": ["Paris.", "It is Paris."],
    "sample_logprobs": [-0.5, -0.9],
}
_TEXT_FIELDS = ("prompt", "source", "prediction", "references", "samples")


class ServiceOverloadedError(EvalsuiteError, RuntimeError):
    """More scoring requests in flight than the service admits; retry later (HTTP 429)."""


def record_cost(record: Mapping[str, Any], fields: Sequence[str]) -> int:
    """Estimated tokens a record costs a model: characters of its texts in ``fields`` / 4 (at least 1).

    >>> record_cost({"prediction": "12345678", "references": ["1234"]}, ["prediction", "references"])
    3
    """
    characters = 0
    for name in fields:
        value = record.get(name)
        if isinstance(value, str):
            characters += len(value)
        elif isinstance(value, list):
            characters += sum(len(text) for text in value if isinstance(text, str))
    return max(1, characters // 4)


class ServedMetrics:
    """The metrics a service scores with, each loaded once and fed through a :class:`MicroBatcher`.

    Each metric gets its own Scorer (so the score cache applies) and its own batcher; every
    batcher and every job scorer runs its model work under :attr:`model_lock`, as one device
    gains nothing from concurrent forward passes.

    >>> served = ServedMetrics(ServiceSettings(metrics={"pii": {}}, cache=False))  # doctest: +SKIP
    >>> served.score([{"prediction": "mail me at a@b.org"}])["scores"][0]["pii_count"]  # doctest: +SKIP
    1.0
    """

    def __init__(
        self, settings: ServiceSettings, *, on_batch: Callable[[str, int], None] | None = None
    ) -> None:
        self.settings = settings
        # Granted in request order, so batchers and jobs really take turns between model calls.
        self.model_lock = FairLock()
        self.metrics: dict[str, Metric] = {metric.name: metric for metric in build_metrics(settings.metrics)}
        for metric in self.metrics.values():
            if metric.needs_corpus:
                raise ConfigError(
                    f"metric {metric.name!r} needs corpus statistics (e.g. idf weights) from a whole input, "
                    "which a service scoring request by request cannot compute; serve it without that option"
                )
        self.cache: ScoreCache | None = ScoreCache(settings.cache_path) if settings.cache else None
        self._scorers = {name: self._new_scorer([metric]) for name, metric in self.metrics.items()}
        self._job_scorers: dict[tuple[str, ...], Scorer] = {}
        self._job_scorers_lock = threading.Lock()
        self.model_hashes = {
            model: self._scorers[name].runtime.describe_model(model)["weights_sha256"]
            for name, metric in self.metrics.items()
            for model in metric.models()
        }
        self._batchers = {
            name: MicroBatcher(
                partial(_score_rows, scorer),
                cost=partial(record_cost, fields=self.metrics[name].input_fields),
                token_budget=settings.token_budget,
                max_items=settings.max_batch_records,
                max_wait_ms=settings.max_wait_ms,
                lock=self.model_lock,
                name=name,
                on_batch=None if on_batch is None else partial(_report_batch, on_batch, name),
            )
            for name, scorer in self._scorers.items()
        }
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.metrics)

    @property
    def batchers(self) -> dict[str, MicroBatcher[Row, Row]]:
        return dict(self._batchers)

    @property
    def in_flight(self) -> int:
        """Scoring requests admitted and not finished."""
        return self._in_flight

    def describe(self) -> list[dict[str, Any]]:
        """Name, columns, fields, direction and config of each served metric."""
        return [
            {
                "name": name,
                "columns": metric.columns,
                "detail_columns": metric.detail_columns,
                "fields": list(metric.fields),
                "optional_fields": list(metric.optional_fields),
                "higher_is_better": metric.higher_is_better,
                "config": metric.config,
                "config_hash": metric.config_hash(),
            }
            for name, metric in self.metrics.items()
        ]

    def warm_up(self) -> None:
        """Score one tiny record with each metric, past the cache, so its models are loaded now."""
        for scorer in self._scorers.values():
            [record] = scorer.work.validate([RawRecord(0, "warm-up record", WARM_UP_RECORD)], "fail").records
            with self.model_lock:
                for metric in scorer.metrics:
                    metric.score_batch([record], scorer.runtime)

    def scorer_for(self, names: Sequence[str]) -> Scorer:
        """A Scorer over the served metrics named (for jobs); it shares their models and the cache.

        It takes no lock itself: the caller passes :attr:`model_lock` in its :class:`~evalsuite.run.Hooks`.
        The scorers are kept (one per list of names) and closed with this object.
        """
        chosen = tuple(self.resolve(list(names)))
        with self._job_scorers_lock:
            if chosen not in self._job_scorers:
                self._job_scorers[chosen] = self._new_scorer([self.metrics[name] for name in chosen])
            return self._job_scorers[chosen]

    def resolve(self, requested: Sequence[str] | None) -> list[str]:
        """The served metric names requested (all when ``None``), duplicates dropped."""
        if requested is None:
            return self.names
        names = list(dict.fromkeys(requested))
        unknown = [name for name in names if name not in self.metrics]
        if unknown:
            raise UnknownMetricError(
                f"metric(s) {', '.join(map(repr, unknown))} not served here; served: {', '.join(self.names)}"
            )
        if not names:
            raise InputError("name at least one metric, or null for all served", field="metrics")
        return names

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count a request in flight for its duration; refused when the limit is reached."""
        with self._in_flight_lock:
            if self._in_flight >= self.settings.max_pending_requests:
                raise ServiceOverloadedError(
                    f"{self._in_flight} scoring requests are in flight, the limit is "
                    f"{self.settings.max_pending_requests}; retry later"
                )
            self._in_flight += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def score(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        metrics: Sequence[str] | None = None,
        fields: Mapping[str, str] | None = None,
        on_error: str = "fail",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Validate and score ``records``; blocks until the batchers answer (thread-safe).

        Returns ``scores`` (one row per valid record), ``summary``, ``errors`` (records skipped
        when ``on_error="skip"``: the error rows of every run, see
        :func:`evalsuite.records.error_entry`, located ``records[i]``), ``config_hashes`` and
        ``model_hashes``. Raises :class:`InputError` naming the field (``records[3].prediction``),
        :class:`UnknownMetricError`, or :class:`TimeoutError` after ``timeout`` seconds (default:
        the settings' request timeout).
        """
        limit = self.settings.request_timeout_s if timeout is None else timeout
        mode = check_on_error(on_error)
        names = self.resolve(metrics)
        chosen = [self.metrics[name] for name in names]
        checked = self._validate(records, names, fields, mode)
        valid, errors = checked.records, checked.errors
        rows = self._scores(names, valid, time.monotonic() + limit, limit)
        rows = self._without_failures(rows, checked.raws, errors, mode)
        columns = [column for metric in chosen for column in metric.columns]
        table = pl.DataFrame(
            {
                column: pl.Series(column, [row[column] for row in rows], dtype=pl.Float64, strict=False)
                for column in columns
            }
        )
        summary = summarize(table, columns, errors=len(errors)).to_dicts()
        return {
            "scores": [{key: _json_value(value) for key, value in row.items()} for row in rows],
            "summary": [{key: _json_value(value) for key, value in row.items()} for row in summary],
            # An error row echoes its record, as sent: it may hold what JSON cannot (NaN, a lone surrogate).
            "errors": [_json_value(row) for row in errors],
            "config_hashes": {metric.name: metric.config_hash() for metric in chosen},
            "model_hashes": {
                model: self.model_hashes[model] for metric in chosen for model in metric.models()
            },
        }

    def close(self) -> None:
        """Finish queued requests, stop the batchers and close the score cache."""
        for batcher in self._batchers.values():
            batcher.close()
        if self.cache is not None:
            self.cache.close()

    # -- steps ----------------------------------------------------------------------------------
    def _scores(self, names: Sequence[str], valid: list[Row], deadline: float, limit: float) -> list[Row]:
        """One row per valid record, ``id`` then each metric's columns, from every metric's batcher."""
        rows: list[Row] = [{"id": record["id"]} for record in valid]
        if not valid:
            return rows
        # All metrics at once: each batcher merges with other requests while the others run. The
        # deadline goes with the work, so it stops (and frees the model lock) when this request
        # gives up, rather than running on for nobody.
        futures = [self._batchers[name].enqueue(valid, deadline=deadline) for name in names]
        try:
            for future in futures:
                outputs = future.result(max(0.0, deadline - time.monotonic()))
                for row, scores in zip(rows, outputs, strict=True):
                    row.update(scores)
        except TimeoutError:
            raise TimeoutError(
                f"scoring took longer than the request timeout ({limit:g} s); "
                "retry later, or send fewer records (or submit a job)"
            ) from None
        finally:
            for future in futures:
                future.cancel()  # withdraws what has not started yet when this request gave up
        return rows

    @staticmethod
    def _without_failures(
        rows: list[Row], raws: list[RawRecord], errors: list[Row], on_error: OnError
    ) -> list[Row]:
        """The rows every metric scored; a record a metric could not score (an LLM judge's unusable
        reply) fails the request, or in skip mode becomes an error row (appended to ``errors``)."""
        kept: list[Row] = []
        for row, raw in zip(rows, raws, strict=True):
            failed = next(
                ((column, value) for column, value in row.items() if isinstance(value, ScoreFailure)), None
            )
            if failed is None:
                kept.append(row)
                continue
            column, failure = failed
            error = InputError(failure.message(), location=raw.location, field=column)
            if on_error == "fail":
                raise _named_in_request(error)
            errors.append(error_entry(raw, error))
        return kept

    def _new_scorer(self, metrics: list[Metric]) -> Scorer:
        settings = self.settings
        return Scorer(
            metrics,
            device=settings.device,
            dtype=settings.dtype,
            batch_size=settings.batch_size,
            token_budget=settings.token_budget,
            cache=self.cache if self.cache is not None else False,  # one connection for the process
        )

    def _work_for(self, names: Sequence[str]) -> Work:
        """The unit of work over the named metrics, to validate a request with (any order of them)."""
        return self.scorer_for([name for name in self.names if name in names]).work

    def _validate(
        self,
        records: Sequence[Mapping[str, Any]],
        names: Sequence[str],
        fields: Mapping[str, str] | None,
        on_error: OnError,
    ) -> Validated:
        """The valid records (with their raw records) and the error rows of a request, through
        :meth:`Work.validate` as every run validates (duplicate ids included); its texts must also
        fit ``max_text_chars``."""
        limit = self.settings.max_records_per_request
        if len(records) > limit:
            raise InputError(
                f"at most {limit} records per request, got {len(records)}; submit a job for more",
                field="records",
            )
        check_field_mapping(fields)
        work = self._work_for(names)
        # One chunk: the whole request is validated before any of it is scored.
        for chunk in iter_chunks(records, fields=fields, label="records", chunk_size=len(records) or 1):
            try:
                return work.validate(self._within_text_limit(chunk), on_error)
            except InputError as error:
                raise _named_in_request(error) from None
        return Validated([], [], [])

    def _within_text_limit(self, chunk: Iterable[RawRecord]) -> Iterator[RawRecord]:
        """The records of ``chunk`` as validation reaches them; a text over ``max_text_chars`` fails
        the request (422) whatever ``on_error`` says: the limit protects the service, not the run."""
        limit = self.settings.max_text_chars
        for raw in chunk:
            for name in _TEXT_FIELDS:
                value = None if raw.data is None else raw.data.get(name)
                texts = [(name, value)] if isinstance(value, str) else []
                if isinstance(value, list):
                    texts = [(f"{name}[{i}]", text) for i, text in enumerate(value) if isinstance(text, str)]
                for where, text in texts:
                    if len(text) > limit:
                        field = f"{raw.location}.{where}"
                        raise InputError(
                            f"{field} has {len(text)} characters, the limit is {limit}", field=field
                        )
            yield raw


def check_field_mapping(fields: Mapping[str, str] | None) -> None:
    """Refuse a mapping of a name that is not a canonical field, naming it (``fields.answer``)."""
    for canonical in fields or {}:
        if canonical not in CANONICAL_FIELDS:
            raise InputError(
                f"unknown field {canonical!r}; expected one of {', '.join(CANONICAL_FIELDS)}",
                field=f"fields.{canonical}",
            )


def _named_in_request(error: InputError) -> InputError:
    """A record's error as a request names it: field ``records[3].prediction``, message prefixed with it."""
    if error.location is None:  # already named (a text over the limit)
        return error
    field = error.location + (f".{error.field}" if error.field else "")
    return InputError(f"{field}: {error.reason}", field=field)


def _score_rows(scorer: Scorer, records: list[Row]) -> list[Row]:
    """A micro-batch through the unit of work (and the cache): one row of columns per record.

    The batcher holds the model lock around this call, so no hooks are passed.
    """
    columns = scorer.score_records(records)
    return [{column: values[i] for column, values in columns.items()} for i in range(len(records))]


def _report_batch(on_batch: Callable[[str, int], None], name: str, items: int, _cost: int) -> None:
    on_batch(name, items)


def _json_value(value: Any) -> Any:
    """NaN and infinity become null (JSON has neither); numpy values become Python ones; a lone
    surrogate (``"\\ud800"`` in a request, UTF-8 cannot carry it) becomes the visible text ``\\ud800``."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return _utf8_text(value)
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {_utf8_text(str(key)): _json_value(item) for key, item in value.items()}
    return value


def _utf8_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
