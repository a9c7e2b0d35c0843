"""The Scorer: plans metrics over records, runs them on one runtime, and builds Results.

``score()`` is a convenience that holds no logic of its own; ``Scorer`` keeps models loaded across
calls (a CI session, a notebook) and streams files with resumable output (the CLI).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import polars as pl

from evalsuite.cache import ScoreCache
from evalsuite.checkpoint import ChunkedWriter
from evalsuite.errors import ConfigError, InputError
from evalsuite.records import (
    CANONICAL_FIELDS,
    RawRecord,
    Source,
    content_key,
    error_entry,
    file_sha256,
    iter_chunks,
    table_from_rows,
    validate_record,
    warn_json_text,
)
from evalsuite.registry import Metric, load_metric
from evalsuite.results import Results, manifest_path, summarize, write_manifest
from evalsuite.runtime import Runtime

OnError = Literal["fail", "skip"]
MetricSpec = str | Metric
Progress = Callable[[int], None]


def build_metrics(
    metrics: Sequence[MetricSpec] | Mapping[str, Mapping[str, Any]] | MetricSpec,
) -> list[Metric]:
    """Metrics from names, instances, or ``{name: config}``; duplicate output columns are refused."""
    if isinstance(metrics, str | Metric):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        built = [load_metric(name, **dict(config or {})) for name, config in metrics.items()]
    else:
        built = [spec if isinstance(spec, Metric) else load_metric(spec) for spec in metrics]
    if not built:
        raise ConfigError("metrics must name at least one metric, got none")
    seen: set[str] = set()
    for metric in built:
        written = [*metric.columns, *metric.detail_columns]
        clash = seen.intersection(written)
        if clash:
            raise ConfigError(
                f"two metrics write the same column(s) {sorted(clash)}; score them in separate runs"
            )
        seen.update(written)
    return built


@dataclass
class FileRun:
    """What a streamed file run produced (the table itself stays on disk)."""

    output: Path
    errors_file: Path | None
    manifest_file: Path
    records: int
    errors: int
    summary: pl.DataFrame
    results: Results  # ids and score columns only, for threshold checks
    manifest: dict[str, Any] = field(default_factory=dict)


class Scorer:
    """Scores records with a fixed set of metrics, keeping their models loaded across calls.

    >>> scorer = Scorer(["bertscore"], device="cpu")          # doctest: +SKIP
    >>> scorer.score([{"prediction": "Paris.", "references": ["Paris is the capital."]}])  # doctest: +SKIP
    """

    def __init__(
        self,
        metrics: Sequence[MetricSpec] | Mapping[str, Mapping[str, Any]] | MetricSpec,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        token_budget: int = 16_384,
        cache: bool | str | Path = True,
        chunk_size: int = 1000,
    ) -> None:
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size}")
        self.metrics = build_metrics(metrics)
        self.runtime = Runtime(device=device, dtype=dtype, batch_size=batch_size, token_budget=token_budget)
        self.chunk_size = chunk_size
        self.cache: ScoreCache | None = None
        if cache is not False:
            self.cache = ScoreCache(None if cache is True else cache)
        self.cache_hits = 0
        self.cache_misses = 0
        self._models: dict[str, dict[str, Any]] = {}  # provenance of each model, resolved once
        # The settings as given (device "auto", not the device it resolved to here), so a worker
        # process elsewhere (evalsuite.distributed) can build an equal Scorer on its own hardware.
        self.options: dict[str, Any] = {
            "device": device,
            "dtype": dtype,
            "batch_size": batch_size,
            "token_budget": token_budget,
            "cache": cache,
            "chunk_size": chunk_size,
        }

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

    # -- in memory ----------------------------------------------------------------------------
    def score(
        self,
        records: Source,
        *,
        fields: Mapping[str, str] | None = None,
        on_error: OnError = "fail",
        progress: Progress | None = None,
    ) -> Results:
        """Score records (dicts, a polars DataFrame, or a file path) and return every row in memory."""
        _check_on_error(on_error)
        started = time.time()
        valid: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for chunk in iter_chunks(records, fields=fields, chunk_size=self.chunk_size):
            chunk_valid, chunk_errors = self._validate(chunk, on_error)
            valid.extend(chunk_valid)
            errors.extend(chunk_errors)
        self._fit_corpus(valid)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(valid), self.chunk_size):
            batch = valid[start : start + self.chunk_size]
            rows.extend(self._rows(batch, self.score_records(batch)))
            if progress:
                progress(len(batch))
        input_info: dict[str, Any] = {"records": len(valid) + len(errors), "errors": len(errors)}
        if isinstance(records, str | Path):
            input_info.update(path=str(records), sha256=file_sha256(records))
        manifest = self.manifest(input_info, fields=fields, started=started)
        return Results(
            self.results_table(rows),
            score_columns=self.score_columns,
            higher_is_better=self.higher_is_better,
            errors=errors,
            manifest=manifest,
        )

    def score_chunk(
        self, chunk: Sequence[RawRecord], on_error: OnError
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Validate and score raw records: their scored rows (input order) and their bad records' error rows.

        The unit of work of every engine: the local one calls it in this process, the Ray one in each
        worker. Build the output table of the rows with :meth:`results_table`.
        """
        valid, errors = self._validate(chunk, on_error)
        return self._rows(valid, self.score_records(valid)), errors

    def score_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """Score validated records with every metric, through the cache; one list per column."""
        columns: dict[str, list[Any]] = {}
        for metric in self.metrics:
            columns.update(self._score_metric(metric, records))
        return columns

    def _score_metric(self, metric: Metric, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        keys = [content_key(record, metric.input_fields) for record in records]
        namespace = self._cache_namespace(metric)
        known: dict[str, dict[str, Any]] = {}
        if self.cache is not None and keys:
            known = self.cache.get_many(namespace, sorted(set(keys)))
        todo: dict[str, Mapping[str, Any]] = {}
        for key, record in zip(keys, records, strict=True):
            if key not in known:
                todo.setdefault(key, record)
        self.cache_hits += len(keys) - sum(key in todo for key in keys)
        self.cache_misses += len(todo)
        names = (*metric.score_names, *metric.detail_names)
        if todo:
            scores = metric.score_batch(list(todo.values()), self.runtime)
            fresh = {key: {name: scores[name][i] for name in names} for i, key in enumerate(todo)}
            if self.cache is not None:
                self.cache.put_many(namespace, fresh)
            known.update(fresh)
        return {f"{metric.name}_{name}": [known[key][name] for key in keys] for name in names}

    def _cache_namespace(self, metric: Metric) -> str:
        # Equal config but other weights (a local model retrained in place) must not share scores.
        weights = [self._model_info(model)["weights_sha256"] for model in metric.models()]
        return ":".join([metric.name, metric.config_hash(), metric.state_hash(), *weights])

    def _model_info(self, model: str) -> dict[str, Any]:
        if model not in self._models:
            self._models[model] = self.runtime.describe_model(model)
        return self._models[model]

    # -- streamed files -----------------------------------------------------------------------
    def score_file(
        self,
        source: str | Path,
        out: str | Path,
        *,
        fields: Mapping[str, str] | None = None,
        on_error: OnError = "fail",
        overwrite: bool = False,
        progress: Progress | None = None,
        engine: Engine | None = None,
    ) -> FileRun:
        """Stream ``source`` in chunks into ``out`` (format from its extension), resumably.

        Each chunk is committed with a checkpoint; if the process dies, calling again with the same
        arguments finishes the job with every input record exactly once. In ``fail`` mode the
        whole input is validated before any scoring, so a bad record stops the run at once.
        ``engine`` says where chunks are scored: in this process (default) or on a cluster
        (``evalsuite.distributed.RayEngine``); the output, resume and manifest are the same.
        """
        _check_on_error(on_error)
        started = time.time()
        input_sha = file_sha256(source)
        if on_error == "fail" or any(metric.needs_corpus for metric in self.metrics):
            self._fit_corpus(self._valid_stream(source, fields, on_error))
        fingerprint = {
            "input_sha256": input_sha,
            "metrics": {metric.name: [metric.config_hash(), metric.state_hash()] for metric in self.metrics},
            "fields": dict(fields or {}),
            "on_error": on_error,
        }
        with ChunkedWriter(
            out,
            fingerprint=fingerprint,
            chunk_size=self.chunk_size,
            overwrite=overwrite,
            inputs=[source],
            manifest=manifest_path(out),
        ) as writer:
            if progress and writer.records_done:
                progress(writer.records_done)
            engine_facts = (engine or LocalEngine()).write_chunks(
                self, Path(source), writer, fields=fields, on_error=on_error, progress=progress
            )
            output, errors_file = writer.finalize()
            scores = _read_scores(output, self.score_columns)
            error_count = _count_lines(errors_file)
            summary = summarize(scores, self.score_columns, errors=error_count)
            manifest = self.manifest(
                {
                    "path": str(source),
                    "sha256": input_sha,
                    "records": scores.height + error_count,
                    "errors": error_count,
                },
                fields=fields,
                started=started,
            )
            manifest.update(engine_facts)
            manifest.update(
                score_columns=self.score_columns,
                summary=summary.to_dicts(),
                output=str(output),
                errors_file=None if errors_file is None else str(errors_file),
                json_text_columns=writer.json_columns,
            )
            # Written before the checkpoint goes: a run killed in between writes it when run again.
            manifest_file = write_manifest(manifest_path(output), manifest)
        results = Results(
            scores,
            score_columns=self.score_columns,
            higher_is_better=self.higher_is_better,
            errors=[{}] * error_count,
            manifest=manifest,
        )
        return FileRun(
            output, errors_file, manifest_file, scores.height, error_count, summary, results, manifest
        )

    def _valid_stream(
        self, source: Source, fields: Mapping[str, str] | None, on_error: OnError
    ) -> Iterator[dict[str, Any]]:
        for chunk in iter_chunks(source, fields=fields, chunk_size=self.chunk_size):
            yield from self._validate(chunk, on_error)[0]

    # -- shared steps -------------------------------------------------------------------------
    def _validate(
        self, chunk: Iterable[RawRecord], on_error: OnError
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        valid: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        written = {*self.score_columns, *self.detail_columns}
        for raw in chunk:
            try:
                record = validate_record(raw, self.required_fields)
                _refuse_output_columns(raw, record, written)
                valid.append(record)
            except InputError as error:
                if on_error == "fail":
                    raise
                errors.append(error_entry(raw, error))
        return valid, errors

    def _fit_corpus(self, records: Iterable[dict[str, Any]]) -> None:
        corpus_metrics = [metric for metric in self.metrics if metric.needs_corpus]
        if not corpus_metrics:
            for _ in records:  # still drain: in fail mode this pass validates the input
                pass
            return
        # One corpus metric reads the stream as it comes; several need it more than once.
        corpus: Iterable[dict[str, Any]] = records if len(corpus_metrics) == 1 else list(records)
        for metric in corpus_metrics:
            metric.fit_corpus(corpus, self.runtime)

    def _rows(
        self, records: Sequence[dict[str, Any]], scores: Mapping[str, list[Any]]
    ) -> list[dict[str, Any]]:
        return [
            {**record, **{column: values[i] for column, values in scores.items()}}
            for i, record in enumerate(records)
        ]

    def results_table(self, rows: list[dict[str, Any]]) -> pl.DataFrame:
        """The output table of scored rows: canonical fields, metadata, scores (Float64), details.

        A metadata column whose values have no one type is stored as JSON text, with a warning.
        """
        table, json_columns = self.chunk_table(rows)
        warn_json_text(json_columns)
        return table

    def commit_chunk(
        self,
        writer: ChunkedWriter,
        chunk_index: int,
        rows: list[dict[str, Any]],
        errors: list[dict[str, Any]],
    ) -> None:
        """Commit one chunk's scored rows (from :meth:`score_chunk`) and error rows with ``writer``."""
        table, json_columns = self.chunk_table(rows)
        writer.write_chunk(chunk_index, table, errors, json_columns=json_columns)

    def chunk_table(self, rows: list[dict[str, Any]]) -> tuple[pl.DataFrame, list[str]]:
        """:meth:`results_table` of one chunk, and the columns in it written as JSON text.

        No warning here: whether a column has one type is only known over the whole run, which
        :class:`ChunkedWriter` checks when it joins the chunks.
        """
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

    def manifest(
        self, input_info: Mapping[str, Any], *, fields: Mapping[str, str] | None, started: float
    ) -> dict[str, Any]:
        """Provenance of a run: versions, device, metric configs and hashes, models, input, times."""
        import torch
        import transformers

        import evalsuite

        finished = time.time()
        models = sorted({model for metric in self.metrics for model in metric.models()})
        return {
            "evalsuite_version": evalsuite.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "runtime": self.runtime.describe(),
            "metrics": [
                {
                    "name": metric.name,
                    "class": f"{type(metric).__module__}:{type(metric).__qualname__}",
                    "config": metric.config,
                    "config_hash": metric.config_hash(),
                    "state_hash": metric.state_hash(),
                    "columns": metric.columns,
                    "detail_columns": metric.detail_columns,
                    "higher_is_better": metric.higher_is_better,
                    "models": metric.models(),
                }
                for metric in self.metrics
            ],
            "models": {model: self._model_info(model) for model in models},
            "input": dict(input_info),
            "fields": dict(fields or {}),
            "truncated_texts": dict(self.runtime.stats.truncated_texts),
            "cache": {
                "path": str(self.cache.path) if self.cache is not None else None,
                "hits": self.cache_hits,
                "misses": self.cache_misses,
            },
            "started_at": _timestamp(started),
            "finished_at": _timestamp(finished),
            "duration_s": round(finished - started, 3),
        }

    def close(self) -> None:
        """Close the score cache (models stay in the per-process cache for other scorers)."""
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Engine(Protocol):
    """Where :meth:`Scorer.score_file` scores its chunks; :class:`LocalEngine` is the default."""

    def write_chunks(
        self,
        scorer: Scorer,
        source: Path,
        writer: ChunkedWriter,
        *,
        fields: Mapping[str, str] | None,
        on_error: OnError,
        progress: Progress | None,
    ) -> dict[str, Any]:
        """Score the records of ``source`` that ``writer`` has not committed, committing chunk by chunk.

        Chunk ``i`` holds input records ``[i * chunk_size, (i + 1) * chunk_size)``, scored by
        :meth:`Scorer.score_chunk`. Returns manifest entries (at least ``engine``).
        """
        ...


class LocalEngine:
    """Scores the chunks one after another in this process."""

    def write_chunks(
        self,
        scorer: Scorer,
        source: Path,
        writer: ChunkedWriter,
        *,
        fields: Mapping[str, str] | None,
        on_error: OnError,
        progress: Progress | None,
    ) -> dict[str, Any]:
        chunks = iter_chunks(source, fields=fields, chunk_size=writer.chunk_size, skip=writer.records_done)
        for chunk_index, chunk in enumerate(chunks, start=writer.completed_chunks):
            rows, errors = scorer.score_chunk(chunk, on_error)
            scorer.commit_chunk(writer, chunk_index, rows, errors)
            if progress:
                progress(len(chunk))
        return {"engine": {"name": "local"}}


def score(
    records: Source,
    metrics: Sequence[MetricSpec] | Mapping[str, Mapping[str, Any]] | MetricSpec = ("bertscore",),
    *,
    fields: Mapping[str, str] | None = None,
    on_error: OnError = "fail",
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 64,
    cache: bool | str | Path = True,
) -> Results:
    """Score records with the named metrics: ``evalsuite.score("answers.jsonl", ["bertscore"])``.

    A shortcut for ``Scorer(metrics, ...).score(records, ...)``.
    """
    with Scorer(metrics, device=device, dtype=dtype, batch_size=batch_size, cache=cache) as scorer:
        return scorer.score(records, fields=fields, on_error=on_error)


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


def _check_on_error(on_error: str) -> None:
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be 'fail' or 'skip', got {on_error!r}")


def _read_scores(path: Path, columns: Sequence[str]) -> pl.DataFrame:
    """Only ids and score columns of a finished output, so large texts stay on disk."""
    suffix = path.suffix
    if suffix == ".parquet":
        frame = pl.scan_parquet(path)
    elif suffix == ".csv":
        frame = pl.scan_csv(path, infer_schema_length=None)
    else:
        if path.stat().st_size == 0:
            return pl.DataFrame(schema={"id": pl.String, **dict.fromkeys(columns, pl.Float64)})
        frame = pl.scan_ndjson(path, infer_schema_length=None)
    present = frame.collect_schema().names()
    return frame.select(
        *[pl.col(column) for column in ["id"] if column in present],
        *[
            pl.col(column).cast(pl.Float64)
            if column in present
            else pl.lit(None, dtype=pl.Float64).alias(column)
            for column in columns
        ],
    ).collect()


def _count_lines(path: Path | None) -> int:
    if path is None:
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")
