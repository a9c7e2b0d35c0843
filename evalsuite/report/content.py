"""What a report says, independent of how it is drawn: provenance, summary, histograms, the worst records,
and against a baseline the paired comparison. The HTML page and the markdown comment render this one model.

Statistics always use every record (the summary is the run's own, as ``evalsuite score`` printed it;
the comparison is :func:`evalsuite.results.compare`'s, as ``evalsuite compare`` prints it). Only the
record lists are bounded: the worst records are an exact top-k, the record table a seeded sample.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from evalsuite.errors import ConfigError
from evalsuite.manifest import config_differences, manifest_path
from evalsuite.results import Comparison, LazyResults, MetricInfo, compare, histogram, scan_results

__all__ = ["RecordList", "Report", "RunInfo", "build_report", "record_texts"]

# Record fields shown beside the scores, in reading order.
TEXT_FIELDS = ("prompt", "prediction", "references", "source")

Step = Callable[[str], None]


@dataclass(frozen=True)
class RunInfo:
    """One run as the report names it: its file, its label and its provenance rows."""

    label: str
    results: LazyResults
    records: int
    provenance: list[tuple[str, str]]
    metric_configs: list[dict[str, str]]

    @property
    def path(self) -> Path:
        return self.results.path

    @property
    def has_manifest(self) -> bool:
        return bool(self.results.manifest)


@dataclass(frozen=True)
class RecordList:
    """Records ranked by one score column, worst first; ``rows`` are whole records (texts, scores,
    evidence). With a baseline, ``base_rows`` holds the same ids' records in the baseline run."""

    metric: MetricInfo
    column: str
    rows: list[dict[str, Any]]
    base_rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    differences: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """Everything a report shows; see :func:`build_report`."""

    title: str
    run: RunInfo
    base: RunInfo | None
    summary: pl.DataFrame
    comparison: Comparison | None
    warnings: list[str]
    histograms: dict[str, pl.DataFrame]
    worst: list[RecordList]
    worsened: list[RecordList]
    sample: pl.DataFrame
    sample_columns: list[str]
    generated_at: str
    options: dict[str, Any]

    @property
    def metrics(self) -> list[MetricInfo]:
        return self.run.results.metrics

    @property
    def sampled(self) -> bool:
        """Whether the record table is a sample (the run has more records than it shows)."""
        return self.sample.height < self.run.records

    def direction(self, column: str) -> bool:
        """Whether higher is better for ``column``."""
        return self.run.results.higher_is_better.get(column, True)


def build_report(
    run: str | os.PathLike[str],
    *,
    versus: str | os.PathLike[str] | None = None,
    title: str | None = None,
    worst: int = 5,
    max_records: int = 200,
    bins: int = 30,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    step: Step | None = None,
) -> Report:
    """Read ``run`` (and the baseline ``versus``) and gather what the report shows.

    ``worst``: records listed per metric (worst first, and with a baseline the records that got worse
    the most); ``max_records``: rows of the record table (a seeded sample of larger runs); ``bins``:
    histogram bins; ``confidence``, ``resamples``, ``seed``: the comparison's bootstrap, as
    ``evalsuite compare`` takes them. ``step`` is called with a short description before each stage
    (the CLI shows it as progress).

    Problems that leave the report meaningful (no manifest, no common ids, different configs) become
    :attr:`Report.warnings`; a file that cannot be read raises :class:`ConfigError`.
    """
    for name, value in (("worst", worst), ("max_records", max_records)):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value!r}")
    if bins < 1:
        raise ConfigError(f"bins must be positive, got {bins!r}")
    tell = step or (lambda _: None)
    tell("reading the runs")
    current = _run_info(scan_results(run), "B" if versus is not None else "run")
    base = _run_info(scan_results(versus), "A") if versus is not None else None
    warnings = [_no_manifest(info) for info in (base, current) if info is not None and not info.has_manifest]
    comparison = None
    if base is not None:
        tell("comparing the runs")
        try:
            comparison = compare(
                base.results.scores(),
                current.results.scores(),
                confidence=confidence,
                n_resamples=resamples,
                seed=seed,
            )
            warnings += comparison.warnings
        except ConfigError as error:
            warnings.append(f"the comparison is left out: {error}")
            warnings += config_differences(base.results.manifest, current.results.manifest)
    tell("binning the scores")
    histograms = _histograms(current, base, bins)
    tell("finding the worst records")
    worst_lists = _worst_records(current, worst)
    worsened = _worsened_records(current, base, comparison, worst) if comparison is not None else []
    sample, sample_columns = _sample(current, max_records, seed)
    return Report(
        title=title or _default_title(current, base),
        run=current,
        base=base,
        summary=current.results.summary(confidence),
        comparison=comparison,
        warnings=warnings,
        histograms=histograms,
        worst=worst_lists,
        worsened=worsened,
        sample=sample,
        sample_columns=sample_columns,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        options={
            "confidence": confidence,
            "resamples": resamples,
            "seed": seed,
            "worst": worst,
            "max_records": max_records,
        },
    )


def _default_title(run: RunInfo, base: RunInfo | None) -> str:
    return f"{run.path.name} vs {base.path.name}" if base is not None else run.path.name


def _no_manifest(info: RunInfo) -> str:
    who = f"run {info.label} ({info.path.name})" if info.label in ("A", "B") else f"run {info.path.name}"
    return (
        f"{who} has no manifest ({manifest_path(info.path).name}): its provenance "
        "is unknown, its score columns are inferred from the numeric columns and taken as higher-is-better"
    )


def _run_info(results: LazyResults, label: str) -> RunInfo:
    records = int(results.table.select(pl.len()).collect().item())
    return RunInfo(label, results, records, _provenance(results, records), _metric_configs(results))


def _provenance(results: LazyResults, records: int) -> list[tuple[str, str]]:
    """What produced the run, as (fact, value) rows; facts the manifest does not hold are left out."""
    manifest = results.run_manifest
    runtime, source = manifest.runtime, manifest.input
    rows = [
        ("result file", str(results.path)),
        ("records", f"{records:,} scored, {results.error_count:,} failed"),
        ("input", _joined(source.path, source.sha256 and f"sha256 {source.sha256[:16]}")),
        ("evalsuite", manifest.evalsuite_version),
        (
            "stack",
            _joined(
                manifest.python and f"Python {manifest.python}",
                manifest.torch and f"torch {manifest.torch}",
                manifest.transformers and f"transformers {manifest.transformers}",
            ),
        ),
        (
            "runtime",
            _joined(
                runtime.device and f"{runtime.device} / {runtime.dtype or 'auto'}",
                runtime.batch_size and f"batch size {runtime.batch_size}",
                manifest.engine.name and f"engine {manifest.engine.name}",
            ),
        ),
        (
            "when",
            _joined(
                manifest.started_at,
                manifest.duration_s is not None and f"{manifest.duration_s:.1f} s",
            ),
        ),
        (
            "models",
            _joined(
                *(
                    f"{name} ({info.source or '?'}, sha256 {(info.weights_sha256 or '?')[:12]})"
                    for name, info in sorted(manifest.models.items())
                )
            ),
        ),
    ]
    return [(fact, value) for fact, value in rows if value]


def _joined(*parts: Any) -> str:
    return " · ".join(str(part) for part in parts if part)


def _metric_configs(results: LazyResults) -> list[dict[str, str]]:
    return [
        {
            "metric": metric.name,
            "config": json.dumps(dict(metric.config), sort_keys=True, default=str) if metric.config else "",
            "config hash": metric.config_hash,
            "direction": "higher is better" if metric.higher_is_better else "lower is better",
        }
        for metric in results.metrics
    ]


def _histograms(run: RunInfo, base: RunInfo | None, bins: int) -> dict[str, pl.DataFrame]:
    """Per score column: ``start, end, count, run`` rows, both runs binned over the same range."""
    charts: dict[str, pl.DataFrame] = {}
    for column in run.results.score_columns:
        sides = [run] + ([base] if base is not None and column in base.results.score_columns else [])
        values = pl.col(column).fill_nan(None)
        ranges = [
            side.results.table.select(values.min().alias("low"), values.max().alias("high")).collect().row(0)
            for side in sides
        ]
        lows = [low for low, _ in ranges if low is not None]
        highs = [high for _, high in ranges if high is not None]
        if not lows:
            continue
        bounds = (float(min(lows)), float(max(highs)))
        charts[column] = pl.concat(
            [
                histogram(side.results.table, column, bins=bins, bounds=bounds).with_columns(
                    pl.lit(f"{side.label}: {side.path.name}" if base is not None else side.path.name).alias(
                        "run"
                    )
                )
                for side in sides
            ]
        )
    return charts


def _ranked(lazy: pl.LazyFrame, column: str, higher_is_better: bool, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` worst records by ``column`` (exact: a lazy top-k over the whole run)."""
    values = pl.col(column)
    return (
        lazy.filter(values.is_not_null() & values.is_not_nan())
        .sort(column, descending=not higher_is_better, nulls_last=True, maintain_order=True)
        .head(limit)
        .collect()
        .to_dicts()
    )


def _worst_records(run: RunInfo, limit: int) -> list[RecordList]:
    lists = []
    for metric in run.results.metrics:
        column = metric.primary_column
        if column is None or limit == 0:
            continue
        rows = _ranked(run.results.table, column, run.results.higher_is_better.get(column, True), limit)
        if rows:
            lists.append(RecordList(metric, column, rows))
    return lists


def _records_by_id(
    results: LazyResults, ids: Sequence[str], id_column: str = "id"
) -> dict[str, dict[str, Any]]:
    if not ids or id_column not in results.columns:
        return {}
    rows = results.table.filter(pl.col(id_column).cast(pl.String).is_in(list(ids))).collect().to_dicts()
    return {str(row[id_column]): row for row in rows}


def _worsened_records(
    run: RunInfo, base: RunInfo | None, comparison: Comparison, limit: int
) -> list[RecordList]:
    """Per metric (its ranking column), the paired records whose score got worse the most."""
    if base is None or limit == 0:
        return []
    lists = []
    for metric in run.results.metrics:
        column = metric.primary_column
        if column is None or column not in comparison.score_columns:
            continue
        changes = comparison.changes(column).filter(pl.col("improvement") < 0).head(limit)
        if changes.is_empty():
            continue
        ids = [str(value) for value in changes["id"]]
        current, previous = _records_by_id(run.results, ids), _records_by_id(base.results, ids)
        lists.append(
            RecordList(
                metric,
                column,
                [current[i] for i in ids if i in current],
                base_rows=previous,
                differences=dict(zip(ids, changes["diff"].to_list(), strict=True)),
            )
        )
    return lists


def _sample(run: RunInfo, limit: int, seed: int) -> tuple[pl.DataFrame, list[str]]:
    """Up to ``limit`` records (id, prediction, each metric's ranking column), a seeded sample when
    the run is larger, in file order."""
    present = set(run.results.columns)
    columns: list[str] = [name for name in ("id", "prediction") if name in present]
    columns += [column for metric in run.results.metrics if (column := metric.primary_column)]
    lazy = run.results.table.select(columns)
    if run.records > limit:
        import numpy as np

        picked = np.sort(np.random.default_rng(seed).choice(run.records, size=limit, replace=False))
        lazy = lazy.with_row_index("\x00row").filter(pl.col("\x00row").is_in(picked.tolist())).drop("\x00row")
    return lazy.collect(), columns


def record_texts(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A record's texts in reading order, lists joined one item per line."""
    texts = []
    for name in TEXT_FIELDS:
        value = record.get(name)
        if isinstance(value, list):
            value = "\n".join(f"• {item}" for item in value)
        if value is not None and str(value):
            texts.append((name, str(value)))
    return texts
