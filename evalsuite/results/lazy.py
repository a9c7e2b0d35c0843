"""Reading a run lazily: a result file's table as a polars LazyFrame, with its manifest."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import polars as pl

from evalsuite.errors import ConfigError
from evalsuite.manifest import RunManifest, higher_is_better_of, manifest_path, score_columns_of
from evalsuite.results.files import format_of, read_errors_file
from evalsuite.results.metrics import MetricInfo, metrics_of
from evalsuite.results.stats import SUMMARY_SCHEMA, summarize
from evalsuite.results.table import Results

__all__ = ["LazyResults", "scan_results"]


@dataclass
class LazyResults:
    """A result file opened without loading its texts: a polars LazyFrame plus the run's manifest.

    Parquet files are scanned, so a query reads only the columns and rows it needs; JSONL and CSV
    are parsed once by :meth:`Results.read` (they cannot be read by column). ``summary()`` reuses the
    summary stored in the manifest when it covers the score columns (the same seeded bootstrap),
    so opening a large run does not bootstrap it again. ``manifest`` is the manifest's JSON dict,
    :attr:`run_manifest` its typed view (both read-only).

    Example:
        >>> run = scan_results("run.parquet")  # doctest: +SKIP
        >>> run.table.filter(pl.col("bertscore_f1") < 0.5).select("id").collect()  # doctest: +SKIP
    """

    path: pathlib.Path
    table: pl.LazyFrame
    manifest: dict[str, Any]
    score_columns: list[str]
    higher_is_better: dict[str, bool]
    errors: list[dict[str, Any]]

    @cached_property
    def run_manifest(self) -> RunManifest:
        """The manifest, typed and validated."""
        return RunManifest.coerce(self.manifest, where=f"manifest of {str(self.path)!r}")

    @cached_property
    def metrics(self) -> list[MetricInfo]:
        """The run's metrics: their score and evidence columns, direction and config (:func:`metrics_of`)."""
        return metrics_of(self)

    @property
    def columns(self) -> list[str]:
        return self.table.collect_schema().names()

    @property
    def detail_columns(self) -> list[str]:
        """Evidence columns named in the manifest that the file holds."""
        present = set(self.columns)
        return [column for column in self.run_manifest.detail_columns if column in present]

    @property
    def error_count(self) -> int:
        """Records that failed: the error list, else the count in the manifest's ``input``."""
        if self.errors:
            return len(self.errors)
        return self.run_manifest.input.errors or 0

    def summary(self, confidence: float = 0.95) -> pl.DataFrame:
        """The run's summary (see :func:`summarize`), from the manifest when it holds one for these columns."""
        stored = self.run_manifest.summary
        if confidence == 0.95 and [row.score for row in stored] == self.score_columns and stored:
            rows = [{name: getattr(row, name) for name in SUMMARY_SCHEMA} for row in stored]
            return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)
        return summarize(self.table, self.score_columns, errors=self.error_count, confidence=confidence)

    def scores(self, id_column: str = "id") -> Results:
        """The ids and score columns only, in memory, as :class:`Results` (for :func:`compare`)."""
        names = [name for name in (id_column, *self.score_columns) if name in self.columns]
        return Results(
            self.table.select(names).collect(),
            score_columns=self.score_columns,
            higher_is_better=self.higher_is_better,
            errors=self.errors,
            manifest=self.manifest,
        )


def scan_results(path: str | os.PathLike[str]) -> LazyResults:
    """Open a result file (and its manifest) lazily; see :class:`LazyResults`.

    Raises :class:`ConfigError` for a missing file, an unsupported extension or a corrupt manifest.

    Example:
        >>> scan_results("run.parquet").summary()  # doctest: +SKIP
    """
    source = pathlib.Path(path)
    suffix = format_of(source)
    if not source.is_file():
        raise ConfigError(f"result file {str(source)!r} does not exist")
    if suffix != ".parquet":
        res = Results.read(source)
        return LazyResults(
            source,
            res.table.lazy(),
            res.manifest,
            res.score_columns,
            {**higher_is_better_of(res.manifest, res.score_columns), **res.higher_is_better},
            res.errors,
        )
    manifest_file = manifest_path(source)
    manifest = RunManifest.read(manifest_file) if manifest_file.is_file() else RunManifest()
    try:
        lazy = pl.scan_parquet(source)
        schema = lazy.collect_schema()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ConfigError(f"result file {str(source)!r} cannot be read as Parquet: {exc}") from exc
    score_columns = score_columns_of(schema, manifest)
    missing = [name for name in score_columns if name not in schema]
    if missing:
        raise ConfigError(f"result file {str(source)!r} lacks the score columns {missing} its manifest lists")
    lazy = lazy.with_columns(pl.col(score_columns).cast(pl.Float64))
    errors = manifest.errors if manifest.errors is not None else read_errors_file(source)
    return LazyResults(
        source,
        lazy,
        manifest.to_json_dict(),
        score_columns,
        higher_is_better_of(manifest, score_columns),
        list(errors),
    )
