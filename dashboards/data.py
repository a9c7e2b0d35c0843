"""Finding runs, and querying them lazily: filters, pages, histograms, exports.

Nothing here imports Streamlit, so every query is testable on its own. A run's table is a polars
LazyFrame (:func:`evalsuite.results.scan_results`); a page of the record explorer collects only the
rows it shows, and charts collect only binned counts, so a 100,000-record run never goes whole into
a widget.

Example:
    >>> runs, problems = load_runs(["runs/"])  # doctest: +SKIP
    >>> lazy = filtered(runs[0], Filters(categories={"model": ("model-a",)}))  # doctest: +SKIP
    >>> page(lazy, page_number=1, page_size=50)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from evalsuite.errors import ConfigError, EvalsuiteError
from evalsuite.manifest import RunManifest, manifest_path
from evalsuite.records import CANONICAL_FIELDS, write_table
from evalsuite.results import LazyResults, MetricInfo, scan_results

RESULT_SUFFIXES = (".parquet", ".jsonl", ".csv")
# Canonical text fields, in the order a person reads a record.
TEXT_FIELDS = ("prompt", "source", "prediction", "references", "samples")
# Columns searched by the free-text search box (when present).
SEARCH_FIELDS = ("id", "prompt", "prediction")
# A metadata column with more distinct values than this gets no value filter (it is not a category).
MAX_CATEGORY_VALUES = 200
PATHS_ENV = "EVALSUITE_DASHBOARD_PATHS"
ExportFormat = Literal["csv", "parquet"]


@dataclass
class Run:
    """A result file opened for the dashboard: its lazy table, manifest and column roles."""

    label: str
    results: LazyResults
    metrics: list[MetricInfo]
    metadata_columns: list[str]
    text_columns: list[str]
    # Per-run results the UI computes once (category values, score bounds, summary).
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Path:
        return self.results.path

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest's JSON dict (``{}`` without one); :attr:`run_manifest` is the typed view."""
        return self.results.manifest

    @property
    def run_manifest(self) -> RunManifest:
        return self.results.run_manifest

    @property
    def score_columns(self) -> list[str]:
        return self.results.score_columns

    @property
    def table(self) -> pl.LazyFrame:
        return self.results.table

    @property
    def has_manifest(self) -> bool:
        return bool(self.results.manifest)

    def higher_is_better(self, column: str) -> bool:
        return self.results.higher_is_better.get(column, True)


@dataclass(frozen=True)
class RunProblem:
    """A file that looked like a run but could not be opened (corrupt manifest, unreadable table)."""

    path: Path
    message: str


def paths_from_environment(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """The paths the dashboard was started with: script arguments, else ``EVALSUITE_DASHBOARD_PATHS``
    (paths joined with ``os.pathsep``, as ``evalsuite dashboard`` sets it)."""
    if argv:
        return list(argv)
    value = (os.environ if environ is None else environ).get(PATHS_ENV, "")
    return [part for part in value.split(os.pathsep) if part]


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Result files named by ``paths``: files as given; in a directory (recursively) every
    ``.parquet`` / ``.jsonl`` / ``.csv`` with a ``.manifest.json`` beside it.

    Raises :class:`ConfigError` when a path does not exist, a file is not a result format, or a
    directory holds no run, naming what was looked for.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise ConfigError(f"{str(path)!r} does not exist; pass result files or directories of runs")
        if path.is_file():
            if path.name.endswith(".manifest.json"):
                path = _result_of_manifest(path)
            elif path.suffix.lower() not in RESULT_SUFFIXES:
                raise ConfigError(
                    f"{str(path)!r} is not a result file; expected one of {', '.join(RESULT_SUFFIXES)}"
                )
            found.append(path.resolve())
            continue
        in_directory = sorted(
            candidate.resolve()
            for candidate in path.rglob("*")
            if candidate.suffix.lower() in RESULT_SUFFIXES
            and candidate.is_file()
            and not candidate.name.startswith(".")
            and not any(part.endswith(".partial") for part in candidate.parent.parts)
            and manifest_path(candidate).is_file()
        )
        if not in_directory:
            raise ConfigError(
                f"no runs found under {str(path)!r}: looked for .parquet, .jsonl or .csv result files "
                "with a .manifest.json beside them (as `evalsuite score` writes)"
            )
        found.extend(in_directory)
    return list(dict.fromkeys(found))


def _result_of_manifest(manifest: Path) -> Path:
    stem = manifest.name.removesuffix(".manifest.json")
    for suffix in RESULT_SUFFIXES:
        candidate = manifest.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    raise ConfigError(f"manifest {str(manifest)!r} has no result file beside it ({stem}.parquet/.jsonl/.csv)")


def load_runs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Run], list[RunProblem]]:
    """Open every run found under ``paths``; files that fail to open are returned as problems, so one
    corrupt manifest does not hide the other runs. Raises :class:`ConfigError` as :func:`discover`."""
    files = discover(paths)
    labels = unique_labels(files)
    runs: list[Run] = []
    problems: list[RunProblem] = []
    for path in files:
        try:
            runs.append(open_run(path, label=labels[path]))
        except (EvalsuiteError, OSError, pl.exceptions.PolarsError) as error:
            problems.append(RunProblem(path, str(error)))
    return runs, problems


def open_run(path: str | os.PathLike[str], *, label: str | None = None) -> Run:
    """Open one result file as a :class:`Run`."""
    results = scan_results(path)
    schema = results.table.collect_schema()
    metrics = results.metrics
    details = {column for metric in metrics for column in metric.detail_columns}
    canonical = set(CANONICAL_FIELDS)
    metadata = [
        name
        for name in schema.names()
        if name not in canonical and name not in results.score_columns and name not in details
    ]
    texts = [name for name in TEXT_FIELDS if name in schema.names()]
    return Run(label or Path(path).name, results, metrics, metadata, texts)


def unique_labels(paths: Sequence[Path]) -> dict[Path, str]:
    """Shortest path suffix naming each file uniquely: ``a/scores.jsonl`` and ``b/scores.jsonl``."""
    labels: dict[Path, str] = {}
    for path in paths:
        parts = path.parts
        for depth in range(1, len(parts) + 1):
            label = "/".join(parts[-depth:])
            clashes = [other for other in paths if other != path and "/".join(other.parts[-depth:]) == label]
            if not clashes:
                labels[path] = label
                break
        else:
            labels[path] = str(path)
    return labels


# -- filters ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the user narrowed a run to: category values per metadata column, a closed range per score
    column, and a case-insensitive text search over id, prompt and prediction.

    A record passes when it matches every filter; a range filter drops records without that score.
    """

    categories: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    search: str = ""

    @property
    def active(self) -> bool:
        return bool(self.categories or self.ranges or self.search.strip())

    def expression(self, schema: pl.Schema) -> pl.Expr:
        """One boolean polars expression for the run's schema (``True`` when nothing is filtered)."""
        conditions: list[pl.Expr] = []
        for column, values in self.categories.items():
            if column not in schema:
                raise ConfigError(f"cannot filter on {column!r}: the run has no such column")
            dtype = schema[column]
            if isinstance(dtype, pl.List):
                # implode(): the values are one collection to look in (polars deprecates the bare Series).
                wanted = pl.Series(list(values), dtype=dtype.inner).implode()
                conditions.append(pl.col(column).list.eval(pl.element().is_in(wanted)).list.any())
            else:
                conditions.append(pl.col(column).is_in(pl.Series(list(values), dtype=dtype).implode()))
        for column, (low, high) in self.ranges.items():
            if column not in schema:
                raise ConfigError(f"cannot filter on {column!r}: the run has no such column")
            conditions.append(pl.col(column).is_between(low, high) & pl.col(column).is_not_nan())
        needle = self.search.strip()
        if needle:
            fields = [name for name in SEARCH_FIELDS if name in schema]
            if fields:
                conditions.append(
                    pl.any_horizontal(
                        pl.col(name)
                        .cast(pl.String)
                        .str.to_lowercase()
                        .str.contains(needle.lower(), literal=True)
                        for name in fields
                    ).fill_null(False)
                )
        return pl.all_horizontal(conditions) if conditions else pl.lit(True)


def filtered(run: Run, filters: Filters) -> pl.LazyFrame:
    """The run's table narrowed by ``filters`` (lazy: nothing is read yet)."""
    if not filters.active:
        return run.table
    return run.table.filter(filters.expression(run.table.collect_schema()))


def count(lazy: pl.LazyFrame) -> int:
    """Number of rows of a lazy table (reads no text columns)."""
    return int(lazy.select(pl.len()).collect().item())


def _is_category(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.List):
        return dtype.inner == pl.String()
    return dtype in (pl.String(), pl.Boolean(), pl.Categorical()) or dtype.is_integer()


def category_values(run: Run, limit: int = MAX_CATEGORY_VALUES) -> dict[str, list[Any]]:
    """Distinct values of each metadata column that looks like a category (at most ``limit`` values:
    strings, booleans, integers, and lists of strings such as tags), sorted; others are left out."""
    schema = run.table.collect_schema()
    candidates = [name for name in run.metadata_columns if _is_category(schema[name])]
    if not candidates:
        return {}
    flat = [
        pl.col(name).explode() if isinstance(schema[name], pl.List) else pl.col(name) for name in candidates
    ]
    counts = run.table.select(
        expr.n_unique().alias(name) for expr, name in zip(flat, candidates, strict=True)
    )
    small = [name for name, n in counts.collect().row(0, named=True).items() if n <= limit]
    values: dict[str, list[Any]] = {}
    for name in small:
        expr = pl.col(name).explode() if isinstance(schema[name], pl.List) else pl.col(name)
        distinct = run.table.select(expr.drop_nulls().unique().sort()).collect().to_series().to_list()
        if distinct:
            values[name] = distinct
    return values


def score_bounds(run: Run) -> dict[str, tuple[float, float]]:
    """Min and max of each score column over the whole run (NaN and null left out); columns with no
    value are left out."""
    if not run.score_columns:
        return {}
    clean = [pl.col(c).fill_nan(None) for c in run.score_columns]
    row = run.table.select(
        *[expr.min().alias(f"{c}\x00min") for expr, c in zip(clean, run.score_columns, strict=True)],
        *[expr.max().alias(f"{c}\x00max") for expr, c in zip(clean, run.score_columns, strict=True)],
    ).collect()
    bounds: dict[str, tuple[float, float]] = {}
    for column in run.score_columns:
        low, high = row[f"{column}\x00min"][0], row[f"{column}\x00max"][0]
        if low is not None and high is not None:
            bounds[column] = (float(low), float(high))
    return bounds


# -- views of a filtered table -------------------------------------------------------------------------


def page(
    lazy: pl.LazyFrame,
    *,
    page_number: int,
    page_size: int,
    sort_by: str | None = None,
    descending: bool = False,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One page (1-based) of a lazy table, optionally sorted (nulls last) and narrowed to ``columns``.

    Only that page is collected; the sort reads just the sort key for every row.
    """
    if page_number < 1 or page_size < 1:
        raise ConfigError(f"page_number and page_size must be >= 1, got {page_number} and {page_size}")
    if sort_by is not None:
        lazy = lazy.sort(sort_by, descending=descending, nulls_last=True, maintain_order=True)
    if columns is not None:
        lazy = lazy.select(columns)
    return lazy.slice((page_number - 1) * page_size, page_size).collect()


def page_count(rows: int, page_size: int) -> int:
    return max(1, math.ceil(rows / page_size))


def record(run: Run, record_id: Any, id_column: str = "id") -> dict[str, Any] | None:
    """Every field of one record, or None when no record has that id."""
    schema = run.table.collect_schema()
    if id_column not in schema:
        return None
    rows = run.table.filter(pl.col(id_column).cast(pl.String) == str(record_id)).head(1).collect()
    return rows.row(0, named=True) if rows.height else None


def describe_scores(lazy: pl.LazyFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Per score column of a (filtered) table: ``score, n, mean, median, p05, p95, min, max``."""
    rows = []
    if columns:
        exprs = []
        for column in columns:
            values = pl.col(column).fill_nan(None)
            exprs += [
                values.count().alias(f"{column}\x00n"),
                values.mean().alias(f"{column}\x00mean"),
                values.median().alias(f"{column}\x00median"),
                values.quantile(0.05, "linear").alias(f"{column}\x00p05"),
                values.quantile(0.95, "linear").alias(f"{column}\x00p95"),
                values.min().cast(pl.Float64).alias(f"{column}\x00min"),
                values.max().cast(pl.Float64).alias(f"{column}\x00max"),
            ]
        stats = lazy.select(exprs).collect().row(0, named=True)
        for column in columns:
            rows.append(
                {
                    "score": column,
                    **{
                        key: stats[f"{column}\x00{key}"]
                        for key in ("n", "mean", "median", "p05", "p95", "min", "max")
                    },
                }
            )
    schema = {
        "score": pl.String,
        "n": pl.Int64,
        **dict.fromkeys(("mean", "median", "p05", "p95", "min", "max"), pl.Float64),
    }
    return pl.DataFrame(rows, schema=schema)


def breakdown(lazy: pl.LazyFrame, by: str, columns: Sequence[str]) -> pl.DataFrame:
    """Per value of a metadata column: the number of records and the mean of each score, worst-first
    is left to the caller; a list column (tags) counts a record once per value it holds."""
    schema = lazy.collect_schema()
    if isinstance(schema[by], pl.List):
        lazy = lazy.explode(by)
    return (
        lazy.group_by(by)
        .agg(pl.len().alias("records"), *[pl.col(c).fill_nan(None).mean().alias(c) for c in columns])
        .sort(by, nulls_last=True)
        .collect()
    )


def export_bytes(lazy: pl.LazyFrame, fmt: ExportFormat) -> bytes:
    """The table as CSV (lists and structs as JSON text, as :meth:`Results.write` does) or Parquet."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"export format must be 'csv' or 'parquet', got {fmt!r}")
    buffer = io.BytesIO()
    write_table(lazy, buffer, fmt=f".{fmt}")
    return buffer.getvalue()


def display_columns(run: Run, selected_scores: Sequence[str] | None = None) -> list[str]:
    """The columns the record table shows: id, metadata, scores, then the prediction and prompt (no evidence)."""
    schema = run.table.collect_schema()
    shown = [name for name in ("id",) if name in schema]
    shown += [name for name in run.metadata_columns if not schema[name].is_nested()]
    shown += list(selected_scores if selected_scores is not None else run.score_columns)
    shown += [name for name in ("prediction", "prompt") if name in schema]
    return shown
