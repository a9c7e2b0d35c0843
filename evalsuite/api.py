"""The Scorer and ``score()``: thin facades over :mod:`evalsuite.run`, the unit of work every path shares.

``score()`` is a convenience that holds no logic of its own; ``Scorer`` keeps models loaded across
calls (a CI session, a notebook) and streams files with resumable output (the CLI).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import polars as pl

from evalsuite.cache import ScoreCache
from evalsuite.checkpoint import ChunkedWriter
from evalsuite.errors import ConfigError
from evalsuite.manifest import EngineInfo, InputInfo, RuntimeInfo, SummaryRow, manifest_path, write_manifest
from evalsuite.records import RawRecord, Source, iter_chunks, read_error_rows, warn_json_text
from evalsuite.registry import Metric, load_metric
from evalsuite.results import Results, summarize
from evalsuite.run import (
    NO_HOOKS,
    ChunkResult,
    Engine,
    FileJob,
    FileRun,
    Hooks,
    LocalEngine,
    OnError,
    RunStats,
    Work,
    WorkSettings,
    check_on_error,
    read_scores,
    run_manifest,
    survey_input,
)
from evalsuite.runtime import Runtime

__all__ = [
    "Engine",
    "FileRun",
    "LocalEngine",
    "OnError",
    "Scorer",
    "build_metrics",
    "score",
]

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


class Scorer:
    """Scores records with a fixed set of metrics, keeping their models loaded across calls.

    A facade over :class:`evalsuite.run.Work`, the unit of work every path shares.

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
        cache: bool | str | Path | ScoreCache = True,
        chunk_size: int = 1000,
    ) -> None:
        # A ScoreCache object is shared (the service's one connection) and closed by its owner; the
        # settings name its file, so a worker elsewhere opens the same cache.
        shared = cache if isinstance(cache, ScoreCache) else None
        cache_setting = cast(bool | str | Path, cache) if shared is None else shared.path
        settings = WorkSettings(device, dtype, batch_size, token_budget, cache_setting, chunk_size)
        self._owns_cache = shared is None
        self.work = Work.build(build_metrics(metrics), settings, shared)
        self.stats = RunStats()  # summed over every call on this Scorer

    # -- what the metrics need and write ---------------------------------------------------------
    @property
    def metrics(self) -> list[Metric]:
        return self.work.metrics

    @property
    def runtime(self) -> Runtime:
        return self.work.runtime

    @property
    def cache(self) -> ScoreCache | None:
        return self.work.cache

    @property
    def settings(self) -> WorkSettings:
        return self.work.settings

    @property
    def chunk_size(self) -> int:
        return self.settings.chunk_size

    @property
    def cache_hits(self) -> int:
        return self.stats.cache_hits

    @property
    def cache_misses(self) -> int:
        return self.stats.cache_misses

    @property
    def required_fields(self) -> list[str]:
        """Canonical fields any metric reads, in canonical order."""
        return self.work.required_fields

    @property
    def score_columns(self) -> list[str]:
        return self.work.score_columns

    @property
    def detail_columns(self) -> list[str]:
        """Evidence columns (lists, structs) written beside the scores."""
        return self.work.detail_columns

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return self.work.higher_is_better

    # -- in memory -------------------------------------------------------------------------------
    def score(
        self,
        records: Source,
        *,
        fields: Mapping[str, str] | None = None,
        on_error: OnError = "fail",
        progress: Progress | None = None,
    ) -> Results:
        """Score records (dicts, a polars DataFrame, or a file path) and return every row in memory."""
        check_on_error(on_error)
        started = time.time()
        digest = hashlib.sha256() if isinstance(records, str | os.PathLike) else None
        chunks = [
            self.work.validate(chunk, on_error)
            for chunk in iter_chunks(records, fields=fields, chunk_size=self.chunk_size, digest=digest)
        ]
        self.work.fit_corpus(record for checked in chunks for record in checked.records)
        run_stats = RunStats()
        rows: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for checked in chunks:
            scored = self.work.score_rows(checked.records, on_error=on_error, raws=checked.raws)
            rows.extend(scored.rows)
            errors.extend(checked.errors)
            errors.extend(scored.errors)
            run_stats.add(scored.stats)
            if progress:
                progress(len(checked.records))
        self.stats.add(run_stats)
        input_info = InputInfo(records=len(rows) + len(errors), errors=len(errors))
        if digest is not None:
            input_info.path, input_info.sha256 = os.fspath(records), digest.hexdigest()  # type: ignore[arg-type]
        manifest = run_manifest(self.work, input_info, fields=fields, stats=run_stats, started=started)
        return Results(
            self.results_table(rows),
            score_columns=self.score_columns,
            higher_is_better=self.higher_is_better,
            errors=errors,
            manifest=manifest,
        )

    def score_chunk(
        self, chunk: Sequence[RawRecord], on_error: OnError, hooks: Hooks = NO_HOOKS
    ) -> ChunkResult:
        """Validate and score raw records (see :meth:`Work.run`); the stats are added to this Scorer's."""
        result = self.work.run(chunk, on_error, hooks)
        self.stats.add(result.stats)
        return result

    def score_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """Score validated records with every metric, through the cache; one list per column (a record
        a metric could not score holds that metric's :class:`~evalsuite.registry.ScoreFailure`)."""
        scored = self.work.score(records)
        self.stats.add(scored.stats)
        return scored.columns

    def results_table(self, rows: list[dict[str, Any]]) -> pl.DataFrame:
        """The output table of scored rows: canonical fields, metadata, scores (Float64), details.

        A metadata column whose values have no one type is stored as JSON text, with a warning.
        """
        table, json_columns = self.work.table(rows)
        warn_json_text(json_columns)
        return table

    # -- streamed files --------------------------------------------------------------------------
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
        on_count: Callable[[int], None] | None = None,
        hooks: Hooks = NO_HOOKS,
    ) -> FileRun:
        """Stream ``source`` in chunks into ``out`` (format from its extension), resumably.

        Each chunk is committed with a checkpoint; if the process dies, calling again with the same
        arguments finishes the job with every input record exactly once. In ``fail`` mode the
        whole input is validated before any scoring, so a bad record stops the run at once.
        ``engine`` says where chunks are scored: in this process (default) or on a cluster
        (``evalsuite.distributed.RayEngine``); the output, resume and manifest are the same.
        ``on_count`` is called with the number of input records once they are counted (for a
        progress bar); ``hooks`` share the models with other work (see :class:`evalsuite.run.Hooks`).
        """
        check_on_error(on_error)
        started = time.time()
        facts = survey_input(
            self.work, source, fields=fields, on_error=on_error, chunk_size=self.chunk_size, hooks=hooks
        )
        if on_count:
            on_count(facts.records)
        fingerprint = {
            "input_sha256": facts.sha256,
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
            job = FileJob(Path(source), facts.records, fields, on_error, progress, hooks)
            report = (engine or LocalEngine()).write_chunks(self.work, job, writer)
            self.stats.add(report.stats)
            output, errors_file = writer.finalize()
            scores = read_scores(output, self.score_columns)
            errors = read_error_rows(errors_file)
            summary = summarize(scores, self.score_columns, errors=len(errors))
            input_info = InputInfo(
                path=str(source), sha256=facts.sha256, records=facts.records, errors=len(errors)
            )
            manifest = run_manifest(self.work, input_info, fields=fields, stats=report.stats, started=started)
            manifest.engine = EngineInfo.model_validate(report.engine)
            if report.runtime is not None:  # where the scores were computed (a Ray engine's workers)
                manifest.runtime = RuntimeInfo.model_validate(report.runtime)
            manifest.score_columns = self.score_columns
            manifest.summary = [SummaryRow.model_validate(row) for row in summary.to_dicts()]
            manifest.output = str(output)
            manifest.errors_file = None if errors_file is None else str(errors_file)
            manifest.json_text_columns = writer.json_columns
            # Written before the checkpoint goes: a run killed in between writes it when run again.
            manifest_file = write_manifest(manifest_path(output), manifest)
        results = Results(
            scores,
            score_columns=self.score_columns,
            higher_is_better=self.higher_is_better,
            errors=errors,
            manifest=manifest,
        )
        return FileRun(output, errors_file, manifest_file, scores.height, len(errors), summary, results)

    def close(self) -> None:
        """Close the score cache this Scorer opened (models stay in the per-process cache)."""
        if self.cache is not None and self._owns_cache:
            self.cache.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


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
