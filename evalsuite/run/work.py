"""The unit of work: a chunk of raw records in, a :class:`ChunkResult` (rows, errors, stats) out.

Every path scores through :class:`Work`: ``Scorer.score()``, file runs on the local and Ray engines,
the service's ``/v1/score`` (validation here, scoring in its micro-batches) and its jobs. What differs
between them is passed in, not subclassed: :class:`Hooks` carries the lock a caller holds around
model work (the service shares one device between requests and jobs) and its cancellation check.
Statistics travel back in the result, so a worker never writes into its caller's objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from evalsuite._validation import check_choice, check_positive_int
from evalsuite.cache import ScoreCache
from evalsuite.errors import InputError
from evalsuite.records import (
    CANONICAL_FIELDS,
    RawRecord,
    content_key,
    error_entry,
    table_from_rows,
    validate_record,
)
from evalsuite.registry import Metric, ScoreFailure
from evalsuite.runtime import Runtime

OnError = Literal["fail", "skip"]
Row = dict[str, Any]


def check_on_error(on_error: object) -> OnError:
    """``on_error`` when it is ``"fail"`` or ``"skip"``."""
    return check_choice("on_error", on_error, ("fail", "skip"))


@dataclass
class RunStats:
    """What scoring counted: cache use and texts cut to a model's limit (by model)."""

    cache_hits: int = 0
    cache_misses: int = 0
    truncated_texts: dict[str, int] = field(default_factory=dict)

    def add(self, other: RunStats) -> None:
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        for model, count in other.truncated_texts.items():
            self.truncated_texts[model] = self.truncated_texts.get(model, 0) + count


@dataclass
class ChunkResult:
    """The scored rows of a chunk's valid records (input order), its error rows, and its stats."""

    rows: list[Row]
    errors: list[Row]
    stats: RunStats


@dataclass
class Validated:
    """A chunk after validation: the valid records (canonical fields), their raw records in the same
    order (to locate a record that fails later, in scoring), and the error rows of the others."""

    records: list[Row]
    raws: list[RawRecord]
    errors: list[Row]


@dataclass
class Scored:
    """Every metric's columns for some records, what scoring counted, and the records a metric could
    not score: position → (the metric's first column, its :class:`ScoreFailure`)."""

    columns: dict[str, list[Any]]
    stats: RunStats
    failures: dict[int, tuple[str, ScoreFailure]]


@dataclass(frozen=True)
class Hooks:
    """How a caller shares the models: ``model_lock`` is held around each piece of model work, and
    ``check_cancelled`` is called before it (it raises to stop; the chunk is then not committed)."""

    model_lock: AbstractContextManager[Any] = field(default_factory=nullcontext)
    check_cancelled: Callable[[], None] | None = None


NO_HOOKS = Hooks()


@dataclass(frozen=True)
class WorkSettings:
    """The settings as given (device ``"auto"``, not the device it resolved to here), so a worker
    process elsewhere (:mod:`evalsuite.distributed`) builds an equal :class:`Work` on its own hardware."""

    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    token_budget: int = 16_384
    cache: bool | str | Path = True  # True: the default cache file; False: none
    chunk_size: int = 1000

    def __post_init__(self) -> None:
        check_positive_int("chunk_size", self.chunk_size)


class Work:
    """Metrics, the runtime they share and the score cache: validates and scores chunks of records."""

    def __init__(
        self,
        metrics: Sequence[Metric],
        runtime: Runtime,
        cache: ScoreCache | None,
        settings: WorkSettings = WorkSettings(),
    ) -> None:
        self.metrics = list(metrics)
        self.runtime = runtime
        self.cache = cache
        self.settings = settings
        self._models: dict[str, dict[str, Any]] = {}  # provenance of each model, resolved once

    @classmethod
    def build(
        cls, metrics: Sequence[Metric], settings: WorkSettings, cache: ScoreCache | None = None
    ) -> Work:
        """A Work with its own runtime; its own cache as ``settings`` say unless ``cache`` is shared."""
        runtime = Runtime(
            device=settings.device,
            dtype=settings.dtype,
            batch_size=settings.batch_size,
            token_budget=settings.token_budget,
        )
        if cache is None and settings.cache is not False:
            cache = ScoreCache(None if settings.cache is True else settings.cache)
        return cls(metrics, runtime, cache, settings)

    # -- what the metrics need and write --------------------------------------------------------
    @property
    def required_fields(self) -> list[str]:
        """Canonical fields any metric reads, in canonical order."""
        needed = {name for metric in self.metrics for name in metric.fields}
        return [name for name in CANONICAL_FIELDS if name in needed]

    @property
    def score_columns(self) -> list[str]:
        return [column for metric in self.metrics for column in metric.columns]

    @property
    def detail_columns(self) -> list[str]:
        """Evidence columns (lists, structs) written beside the scores."""
        return [column for metric in self.metrics for column in metric.detail_columns]

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return {column: metric.higher_is_better for metric in self.metrics for column in metric.columns}

    @property
    def needs_corpus(self) -> bool:
        return any(metric.needs_corpus for metric in self.metrics)

    # -- the unit of work -----------------------------------------------------------------------
    def run(self, chunk: Sequence[RawRecord], on_error: OnError, hooks: Hooks = NO_HOOKS) -> ChunkResult:
        """Validate and score a chunk of raw records."""
        checked = self.validate(chunk, on_error)
        result = self.score_rows(checked.records, hooks, on_error=on_error, raws=checked.raws)
        result.errors[:0] = checked.errors
        return result

    def validate(self, chunk: Iterable[RawRecord], on_error: OnError) -> Validated:
        """The chunk's valid records (canonical fields), their raw records and, in skip mode, the error
        rows of the others.

        In fail mode the first bad record raises :class:`InputError` naming its location and field.
        """
        checked = Validated([], [], [])
        written = {*self.score_columns, *self.detail_columns}
        required = self.required_fields
        for raw in chunk:
            try:
                record = validate_record(raw, required)
                _refuse_output_columns(raw, record, written)
                checked.records.append(record)
                checked.raws.append(raw)
            except InputError as error:
                if on_error == "fail":
                    raise
                checked.errors.append(error_entry(raw, error))
        return checked

    def score_rows(
        self,
        records: Sequence[Row],
        hooks: Hooks = NO_HOOKS,
        *,
        on_error: OnError = "fail",
        raws: Sequence[RawRecord] | None = None,
    ) -> ChunkResult:
        """Validated records with their score and detail columns added, and what scoring counted.

        A record a metric could not score (a :class:`ScoreFailure`) becomes an error row in skip
        mode, located by its raw record when ``raws`` are given; in fail mode it raises
        :class:`InputError` naming the record, the column and the reason.
        """
        scored = self.score(records, hooks)
        rows: list[Row] = []
        errors: list[Row] = []
        for i, record in enumerate(records):
            failed = scored.failures.get(i)
            if failed is None:
                rows.append({**record, **{column: values[i] for column, values in scored.columns.items()}})
                continue
            column, failure = failed
            raw = raws[i] if raws is not None else RawRecord(i, f"record id {record['id']!r}", dict(record))
            error = InputError(failure.message(), location=raw.location, field=column)
            if on_error == "fail":
                raise error
            errors.append(error_entry(raw, error))
        return ChunkResult(rows, errors, scored.stats)

    def score(self, records: Sequence[Mapping[str, Any]], hooks: Hooks = NO_HOOKS) -> Scored:
        """Every metric's columns for validated records, through the cache: one list per column.

        ``failures`` maps the position of each record a metric could not score to that metric's first
        column and the :class:`ScoreFailure` (its values in the columns are the failure too).
        """
        scored = Scored({}, RunStats(), {})
        truncated_before = dict(self.runtime.stats.truncated_texts)
        for metric in self.metrics:
            columns = self._score_metric(metric, records, hooks, scored.stats)
            scored.columns.update(columns)
            first = metric.columns[0] if metric.columns else next(iter(columns), "")
            for i, value in enumerate(columns.get(first, [])):
                if isinstance(value, ScoreFailure):
                    scored.failures.setdefault(i, (first, value))
        for model, count in self.runtime.stats.truncated_texts.items():
            if count != truncated_before.get(model, 0):
                scored.stats.truncated_texts[model] = count - truncated_before.get(model, 0)
        return scored

    def fit_corpus(self, records: Iterable[Row], hooks: Hooks = NO_HOOKS) -> None:
        """Feed validated records to the metrics that need corpus statistics (idf), draining ``records``."""
        corpus_metrics = [metric for metric in self.metrics if metric.needs_corpus]
        if corpus_metrics:
            # One corpus metric reads the stream as it comes; several need it more than once.
            corpus: Iterable[Row] = records if len(corpus_metrics) == 1 else list(records)
            with hooks.model_lock:
                for metric in corpus_metrics:
                    metric.fit_corpus(corpus, self.runtime)
        for _ in records:  # drain what a metric left: the caller's pass also validates and hashes
            pass

    def table(self, rows: list[Row]) -> tuple[pl.DataFrame, list[str]]:
        """The output table of scored rows (canonical fields, metadata, scores as Float64, details) and
        the metadata columns written in it as JSON text (they have no one type)."""
        if not rows:
            empty = pl.DataFrame(
                schema=dict.fromkeys(["id", *self.score_columns], pl.Float64) | {"id": pl.String}
            )
            return empty, []
        table, json_columns = table_from_rows(rows)
        canonical = [name for name in CANONICAL_FIELDS if name in table.columns]
        scores = [column for column in self.score_columns if column in table.columns]
        details = [column for column in self.detail_columns if column in table.columns]
        metadata = [column for column in table.columns if column not in {*canonical, *scores, *details}]
        table = table.select(
            *canonical, *metadata, *[pl.col(column).cast(pl.Float64) for column in scores], *details
        )
        return table, json_columns

    # -- provenance -----------------------------------------------------------------------------
    def model_info(self, model: str) -> dict[str, Any]:
        """Source, location and weights hash of a model (resolved once)."""
        if model not in self._models:
            self._models[model] = self.runtime.describe_model(model)
        return self._models[model]

    def cache_namespace(self, metric: Metric) -> str:
        # Equal config but other weights (a local model retrained in place) must not share scores.
        weights = [self.model_info(model)["weights_sha256"] for model in metric.models()]
        return ":".join([metric.name, metric.config_hash(), metric.state_hash(), *weights])

    def _score_metric(
        self, metric: Metric, records: Sequence[Mapping[str, Any]], hooks: Hooks, stats: RunStats
    ) -> dict[str, list[Any]]:
        keys = [content_key(record, metric.input_fields) for record in records]
        namespace = self.cache_namespace(metric)
        known: dict[str, dict[str, Any]] = {}
        if self.cache is not None and keys:
            known = self.cache.get_many(namespace, sorted(set(keys)))
        todo: dict[str, Mapping[str, Any]] = {}
        for key, record in zip(keys, records, strict=True):
            if key not in known:
                todo.setdefault(key, record)
        stats.cache_hits += len(keys) - sum(key in todo for key in keys)
        stats.cache_misses += len(todo)
        names = (*metric.score_names, *metric.detail_names)
        if todo:
            if hooks.check_cancelled is not None:
                hooks.check_cancelled()
            with hooks.model_lock:
                scores = metric.score_batch(list(todo.values()), self.runtime)
            fresh = {key: {name: scores[name][i] for name in names} for i, key in enumerate(todo)}
            if self.cache is not None:
                # A failed record is not cached: a resumed or repeated run tries it again.
                self.cache.put_many(
                    namespace,
                    {
                        key: values
                        for key, values in fresh.items()
                        if not any(isinstance(value, ScoreFailure) for value in values.values())
                    },
                )
            known.update(fresh)
        return {f"{metric.name}_{name}": [known[key][name] for key in keys] for name in names}


def _refuse_output_columns(raw: RawRecord, record: Mapping[str, Any], written: set[str]) -> None:
    """An input field named like a column the run writes would be silently replaced by the score."""
    clash = sorted(written.intersection(record))
    if clash:
        raise InputError(
            f"field {clash[0]!r} has the name of a column this run writes, so its value would be lost; "
            "rename it in the input (or leave it out)",
            location=raw.location,
            field=clash[0],
        )
