"""Results of a scoring run: the per-record table, a summary with bootstrap CIs, and the run manifest.

Score columns are named ``<metric>_<score>`` (``bertscore_f1``) and hold Float64 values, null where the
record errored. Missing values (null or NaN) are left out of every statistic.

Example:
    >>> import polars as pl
    >>> table = pl.DataFrame({"id": ["a", "b"], "bertscore_f1": [0.8, 0.9]})
    >>> res = Results(table, score_columns=["bertscore_f1"])
    >>> round(res.mean("bertscore_f1"), 2)
    0.85
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.stats

from evalsuite.records.writers import commit_file, json_encode_nested
from evalsuite.errors import ConfigError, ThresholdError

__all__ = [
    "Comparison",
    "LazyResults",
    "Results",
    "UnknownColumnError",
    "bootstrap_ci",
    "compare",
    "config_differences",
    "higher_is_better_of",
    "manifest_path",
    "metric_entries",
    "metric_of_column",
    "paired_test",
    "read_manifest",
    "scan_results",
    "summarize",
    "write_manifest",
]

_FORMATS = (".parquet", ".jsonl", ".csv")
_MANIFEST_SUFFIX = ".manifest.json"
# Record fields that hold lists or mappings; used to decode a CSV written without a manifest.
_NESTED_RECORD_FIELDS = ("references", "samples", "metadata")
# Upper bound on resampled values held in memory at once (8 bytes each), so a 100k-record column
# does not allocate n_resamples * n floats in one go.
_BOOTSTRAP_CHUNK_VALUES = 10_000_000

_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "score": pl.String(),
    "mean": pl.Float64(),
    "std": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "n": pl.Int64(),
    "errors": pl.Int64(),
}


class UnknownColumnError(ConfigError, KeyError):
    """A column name that is not in the results; the message lists the available ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


def bootstrap_ci(
    values: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean; NaNs are dropped first.

    No values gives ``(nan, nan)``; one value, or all equal, gives ``(value, value)``.

    Example:
        >>> low, high = bootstrap_ci(np.array([0.7, 0.8, 0.9, 0.85]))
        >>> low <= 0.8125 <= high
        True
    """
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[~np.isnan(data)]
    if data.size == 0:
        return (float("nan"), float("nan"))
    # scipy warns (and returns NaN) on degenerate samples; the answer is known exactly here.
    if data.size == 1 or bool(np.all(data == data[0])):
        return (float(data[0]), float(data[0]))
    result = scipy.stats.bootstrap(
        (data,),
        np.mean,
        n_resamples=n_resamples,
        batch=max(1, _BOOTSTRAP_CHUNK_VALUES // data.size),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def summarize(
    table: pl.DataFrame | pl.LazyFrame,
    score_columns: Sequence[str],
    *,
    errors: int = 0,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """One row per score column: ``score, mean, std, ci_low, ci_high, n, errors``.

    ``n`` counts the non-missing values; ``std`` uses ddof=1 and is null below two values; mean and CI are
    null when there are none. ``errors`` (records that failed validation or scoring) is copied to each row.
    A LazyFrame is read for the score columns only, so a large file's texts are never loaded.

    Example:
        >>> summarize(pl.DataFrame({"tox_score": [0.1, 0.3]}), ["tox_score"])["mean"].to_list()
        [0.2]
    """
    _check_confidence(confidence)
    lazy = table.lazy() if isinstance(table, pl.DataFrame) else table
    available = lazy.collect_schema().names()
    _check_columns(score_columns, available, what="column")
    scores = lazy.select(list(dict.fromkeys(score_columns))).collect()
    rows: list[dict[str, Any]] = []
    for column in score_columns:
        data = _present_values(scores[column])
        n = int(data.size)
        low, high = bootstrap_ci(data, confidence=confidence)
        rows.append(
            {
                "score": column,
                "mean": float(data.mean()) if n else None,
                "std": float(data.std(ddof=1)) if n >= 2 else None,
                "ci_low": low if n else None,
                "ci_high": high if n else None,
                "n": n,
                "errors": errors,
            }
        )
    return pl.DataFrame(rows, schema=_SUMMARY_SCHEMA)


class Results:
    """Scores of one run: per-record table + summary + manifest.

    Example:
        >>> res = Results(
        ...     pl.DataFrame({"id": ["a", "b", "c"], "bertscore_f1": [0.82, 0.91, None]}),
        ...     score_columns=["bertscore_f1"],
        ... )
        >>> len(res), res.summary()["n"][0]
        (3, 2)
        >>> res.assert_thresholds({"bertscore_f1": 0.8})
    """

    def __init__(
        self,
        table: pl.DataFrame,
        *,
        score_columns: Sequence[str],
        higher_is_better: Mapping[str, bool] | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
        manifest: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(score_columns, str):
            raise ConfigError(
                f"score_columns must be a sequence of column names, got the string {score_columns!r}"
            )
        _check_columns(score_columns, table.columns, what="score column")
        self.table: pl.DataFrame = table
        self.score_columns: list[str] = list(score_columns)
        self.higher_is_better: dict[str, bool] = dict(higher_is_better or {})
        self.errors: list[dict[str, Any]] = [dict(error) for error in errors]
        self.manifest: dict[str, Any] = dict(manifest or {})
        self._summary_cache: tuple[tuple[pl.DataFrame, tuple[str, ...], int, float], pl.DataFrame] | None = (
            None
        )

    def summary(self, confidence: float = 0.95) -> pl.DataFrame:
        """Summary of every score column (see :func:`summarize`).

        Example:
            >>> Results(pl.DataFrame({"x_y": [1.0, 2.0]}), score_columns=["x_y"]).summary()["mean"][0]
            1.5
        """
        key = (self.table, tuple(self.score_columns), len(self.errors), confidence)
        cached = self._summary_cache
        # Bootstrapping takes about a second per column at 100k records, and repr() and write() both
        # summarise; the key holds the table itself, so replacing res.table invalidates it.
        if cached is None or cached[0][0] is not key[0] or cached[0][1:] != key[1:]:
            summary = summarize(
                self.table, self.score_columns, errors=len(self.errors), confidence=confidence
            )
            cached = self._summary_cache = (key, summary)
        return cached[1]

    def __len__(self) -> int:
        return self.table.height

    def __getitem__(self, column: str) -> pl.Series:
        _check_columns([column], self.table.columns, what="column")
        return self.table[column]

    def mean(self, column: str) -> float:
        """Mean of a column over its non-missing values (NaN when there are none).

        Example:
            >>> Results(pl.DataFrame({"x_y": [1.0, None, 3.0]}), score_columns=["x_y"]).mean("x_y")
            2.0
        """
        data = _present_values(self[column])
        return float(data.mean()) if data.size else float("nan")

    def check_thresholds(self, thresholds: Mapping[str, float]) -> list[str]:
        """One line per score whose mean misses its threshold; an empty list means all pass.

        A mean must be ``>=`` its threshold, or ``<=`` where ``higher_is_better[column]`` is False.

        Example:
            >>> res = Results(pl.DataFrame({"x_y": [0.5, 0.7]}), score_columns=["x_y"])
            >>> res.check_thresholds({"x_y": 0.9})[0].startswith("x_y: mean 0.6 (95% CI")
            True
        """
        _check_columns(list(thresholds), self.score_columns, what="score column")
        confidence = 0.95
        # Only the thresholded columns are bootstrapped: this runs in CI on every commit.
        summary = summarize(self.table, list(thresholds), errors=len(self.errors), confidence=confidence)
        failures = []
        for row in summary.iter_rows(named=True):
            column = row["score"]
            threshold = float(thresholds[column])
            higher = self.higher_is_better.get(column, True)
            mean = row["mean"]
            if mean is None:
                failures.append(
                    f"{column}: no scored records (n=0), so the threshold {threshold:g} cannot be met"
                )
                continue
            if (mean >= threshold) if higher else (mean <= threshold):
                continue
            failures.append(
                f"{column}: mean {_format_against(mean, threshold)} "
                f"({confidence * 100:g}% CI {row['ci_low']:.3g}–{row['ci_high']:.3g}, n={row['n']}) "
                f"is {'below' if higher else 'above'} the threshold {threshold:g}"
            )
        return failures

    def assert_thresholds(self, thresholds: Mapping[str, float]) -> None:
        """Raise :class:`ThresholdError` listing every score whose mean misses its threshold.

        Example:
            >>> res = Results(
            ...     pl.DataFrame({"toxicity_score": [0.01, 0.03]}),
            ...     score_columns=["toxicity_score"],
            ...     higher_is_better={"toxicity_score": False},
            ... )
            >>> res.assert_thresholds({"toxicity_score": 0.05})
        """
        failures = self.check_thresholds(thresholds)
        if failures:
            raise ThresholdError(
                f"{len(failures)} of {len(thresholds)} thresholds not met:\n" + "\n".join(failures)
            )

    def compare(self, other: Results, **options: Any) -> Comparison:
        """This run (A) against ``other`` (B), paired on record id; see :func:`compare` for the options.

        Example:
            >>> Results.read("a.parquet").compare(Results.read("b.parquet")).table  # doctest: +SKIP
        """
        return compare(self, other, **options)

    def write(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Write the table (format from the extension: .parquet, .jsonl, .csv) and its manifest beside it.

        CSV cannot hold lists or mappings, so those columns are written as JSON text (and decoded by
        :meth:`read`). The manifest gains ``score_columns``, ``summary``, ``higher_is_better`` and ``errors``.

        Example:
            >>> res.write("run.parquet")  # also writes run.manifest.json  # doctest: +SKIP
            PosixPath('run.parquet')
        """
        target = pathlib.Path(path)
        suffix = _format_of(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        manifest = dict(self.manifest)
        manifest["score_columns"] = self.score_columns
        manifest["summary"] = self.summary().to_dicts()
        manifest["higher_is_better"] = self.higher_is_better
        manifest["errors"] = self.errors
        table = self.table
        if suffix == ".csv":
            nested = [name for name, dtype in table.schema.items() if dtype.is_nested()]
            table = table.with_columns(json_encode_nested(table.schema))
            manifest["csv_json_columns"] = nested
        writers: dict[str, Callable[[pathlib.Path], object]] = {
            ".parquet": table.write_parquet,
            ".jsonl": table.write_ndjson,
            ".csv": table.write_csv,
        }
        _atomic_write(target, writers[suffix])
        write_manifest(manifest_path(target), manifest)
        return target

    def to_parquet(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Same as :meth:`write` with a ``.parquet`` path."""
        return self.write(_require_suffix(path, ".parquet"))

    def to_jsonl(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Same as :meth:`write` with a ``.jsonl`` path."""
        return self.write(_require_suffix(path, ".jsonl"))

    def to_csv(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Same as :meth:`write` with a ``.csv`` path."""
        return self.write(_require_suffix(path, ".csv"))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Results:
        """Read a result file written by :meth:`write` (or the CLI), with its manifest when present.

        Score columns come from ``manifest["score_columns"]``; failing that, every Float column named
        after a metric in ``manifest["metrics"]``; with no manifest at all, every Float column. Errors
        come from ``manifest["errors"]``, else from ``<name>.errors.jsonl`` beside the file (the CLI's).

        Example:
            >>> res = Results.read("run.parquet")  # doctest: +SKIP
        """
        source = pathlib.Path(path)
        suffix = _format_of(source)
        if not source.is_file():
            raise ConfigError(f"result file {str(source)!r} does not exist")
        manifest_file = manifest_path(source)
        manifest = read_manifest(manifest_file) if manifest_file.is_file() else {}
        if suffix == ".parquet":
            table = pl.read_parquet(source)
        elif suffix == ".jsonl":
            table = pl.read_ndjson(source)
        else:
            table = pl.read_csv(source)
            encoded = manifest.get("csv_json_columns")
            if encoded is not None:
                table = table.with_columns(
                    _json_decoded(table[name]) for name in encoded if name in table.columns
                )
            else:
                # No record of what was encoded (a CSV from the CLI or elsewhere): decode the record
                # fields that hold lists or mappings, where every cell is JSON of that shape.
                for name in _NESTED_RECORD_FIELDS:
                    if table.schema.get(name) == pl.String():
                        decoded = _json_decoded_if_nested(table[name])
                        if decoded is not None:
                            table = table.with_columns(decoded)
        score_columns = _score_columns_of(table, manifest)
        # JSONL and CSV lose the dtype of an all-null column (and NaN becomes null in JSONL).
        table = table.with_columns(pl.col(score_columns).cast(pl.Float64))
        return cls(
            table,
            score_columns=score_columns,
            # The CLI's manifests give directions per metric, Results.write's per column: both count.
            higher_is_better=higher_is_better_of(manifest, score_columns),
            errors=manifest["errors"] if "errors" in manifest else _read_errors_file(source),
            manifest=manifest,
        )

    def __repr__(self) -> str:
        lines = [f"Results({len(self)} records, {len(self.errors)} errors)"]
        width = max((len(name) for name in self.score_columns), default=0)
        for row in self.summary().iter_rows(named=True):
            if row["mean"] is None:
                lines.append(f"  {row['score']:<{width}}  n=0")
            else:
                lines.append(
                    f"  {row['score']:<{width}}  {row['mean']:.4g}"
                    f"  [{row['ci_low']:.3g}, {row['ci_high']:.3g}]  n={row['n']}"
                )
        return "\n".join(lines)


def manifest_path(path: str | os.PathLike[str]) -> pathlib.Path:
    """The manifest file that belongs to a result file.

    Example:
        >>> manifest_path("out/run.parquet").as_posix()
        'out/run.manifest.json'
    """
    result = pathlib.Path(path)
    if result.name.endswith(_MANIFEST_SUFFIX):
        return result
    stem = result.name
    for suffix in (".jsonl.gz", *_FORMATS):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        stem = result.stem
    return result.with_name(stem + _MANIFEST_SUFFIX)


def write_manifest(path: str | os.PathLike[str], manifest: Mapping[str, Any]) -> pathlib.Path:
    """Write a manifest as JSON (indent 2, sorted keys) atomically; returns the file written.

    ``path`` is the manifest file, or the result file it belongs to (mapped by :func:`manifest_path`).

    Example:
        >>> write_manifest("run.parquet", {"evalsuite": "0.1.0"})  # doctest: +SKIP
        PosixPath('run.manifest.json')
    """
    target = manifest_path(path)
    # Provenance values such as paths and datetimes are recorded as their text.
    text = json.dumps(dict(manifest), indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    _atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return target


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a manifest; ``path`` is the manifest file or the result file it belongs to.

    Example:
        >>> read_manifest("run.parquet")["score_columns"]  # doctest: +SKIP
        ['bertscore_f1']
    """
    target = manifest_path(path)
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"manifest {str(target)!r} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ConfigError(f"manifest {str(target)!r} must hold a JSON object, got {type(manifest).__name__}")
    return manifest


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _check_columns(names: Sequence[str], available: Sequence[str], *, what: str) -> None:
    unknown = [name for name in names if name not in available]
    if unknown:
        listed = ", ".join(map(repr, available)) or "none"
        raise UnknownColumnError(f"unknown {what} {', '.join(map(repr, unknown))}; available: {listed}")


def _present_values(series: pl.Series) -> np.ndarray:
    """The non-missing values of a numeric column as float64; NaN counts as missing, like null."""
    data = series.drop_nulls().cast(pl.Float64).to_numpy()
    return data[~np.isnan(data)]


def _format_against(value: float, reference: float) -> str:
    """``value`` to 3 significant digits, or more when fewer would print it equal to ``reference``."""
    for digits in range(3, 16):
        text = f"{value:.{digits}g}"
        if text != f"{reference:.{digits}g}":
            return text
    return repr(value)


def _format_of(path: pathlib.Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ConfigError(f"result file must end in one of {', '.join(_FORMATS)}, got {path.name!r}")
    return suffix


def _require_suffix(path: str | os.PathLike[str], suffix: str) -> pathlib.Path:
    target = pathlib.Path(path)
    if target.suffix.lower() != suffix:
        raise ConfigError(f"expected a path ending in {suffix}, got {target.name!r}")
    return target


def _atomic_write(target: pathlib.Path, write: Callable[[pathlib.Path], object]) -> None:
    # A reader (the dashboard, a resumed run) must never see a half-written file.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        write(tmp)
        commit_file(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_decoded(series: pl.Series) -> pl.Series:
    values = [None if value is None else json.loads(value) for value in series.cast(pl.String).to_list()]
    return pl.Series(series.name, values, strict=False)


def _json_decoded_if_nested(series: pl.Series) -> pl.Series | None:
    values: list[Any] = []
    for text in series.to_list():
        if text is None:
            values.append(None)
            continue
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if not isinstance(value, list | dict):
            return None
        values.append(value)
    return pl.Series(series.name, values, strict=False)


def _read_errors_file(source: pathlib.Path) -> list[dict[str, Any]]:
    # The CLI's chunked writer puts the records that failed beside the output as <name>.errors.jsonl.
    errors_file = source.with_suffix(".errors.jsonl")
    if not errors_file.is_file():
        return []
    with errors_file.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _metric_names(manifest: Mapping[str, Any]) -> list[str]:
    # The manifest lists metrics as {name: config} or as [{"name": ...}, ...] / [name, ...].
    metrics = manifest.get("metrics")
    if isinstance(metrics, Mapping):
        return [str(name) for name in metrics]
    if isinstance(metrics, list):
        return [str(item["name"]) if isinstance(item, Mapping) else str(item) for item in metrics]
    return []


def _score_columns_of(table: pl.DataFrame, manifest: Mapping[str, Any]) -> list[str]:
    listed = manifest.get("score_columns")
    if listed is not None:
        return [str(name) for name in listed]
    # A column that is null in every row is read back from JSONL/CSV as Null or String, not Float.
    candidates = [name for name, dtype in table.schema.items() if dtype.is_float() or dtype == pl.Null()]
    if not manifest:
        return [name for name in candidates if table.schema[name].is_float()]
    prefixes = tuple(f"{name}_" for name in _metric_names(manifest))
    return [name for name in candidates if prefixes and name.startswith(prefixes)]


# -- reading a run lazily ------------------------------------------------------------------------------


@dataclass
class LazyResults:
    """A result file opened without loading its texts: a polars LazyFrame plus the run's manifest.

    Parquet files are scanned, so a query reads only the columns and rows it needs; JSONL and CSV
    are parsed once by :meth:`Results.read` (they cannot be read by column). ``summary()`` reuses the
    summary stored in the manifest when it covers the score columns (the same seeded bootstrap),
    so opening a large run does not bootstrap it again.

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

    @property
    def columns(self) -> list[str]:
        return self.table.collect_schema().names()

    @property
    def detail_columns(self) -> list[str]:
        """Evidence columns named in the manifest that the file holds."""
        present = set(self.columns)
        return [
            str(column)
            for metric in metric_entries(self.manifest)
            for column in metric.get("detail_columns") or []
            if column in present
        ]

    @property
    def error_count(self) -> int:
        """Records that failed: the error list, else the count in the manifest's ``input``."""
        if self.errors:
            return len(self.errors)
        source = self.manifest.get("input")
        counted = source.get("errors") if isinstance(source, Mapping) else None
        return int(counted) if isinstance(counted, int) else 0

    def summary(self, confidence: float = 0.95) -> pl.DataFrame:
        """The run's summary (see :func:`summarize`), from the manifest when it holds one for these columns."""
        stored = self.manifest.get("summary")
        if confidence == 0.95 and isinstance(stored, list) and stored:
            try:
                table = pl.DataFrame(stored, schema=_SUMMARY_SCHEMA)
            except (TypeError, ValueError, pl.exceptions.PolarsError):
                table = None
            if table is not None and table["score"].to_list() == self.score_columns:
                return table
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
    suffix = _format_of(source)
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
    manifest = read_manifest(manifest_file) if manifest_file.is_file() else {}
    try:
        lazy = pl.scan_parquet(source)
        schema = lazy.collect_schema()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ConfigError(f"result file {str(source)!r} cannot be read as Parquet: {exc}") from exc
    score_columns = _score_columns_of(pl.DataFrame(schema=schema), manifest)
    missing = [name for name in score_columns if name not in schema]
    if missing:
        raise ConfigError(f"result file {str(source)!r} lacks the score columns {missing} its manifest lists")
    lazy = lazy.with_columns(pl.col(score_columns).cast(pl.Float64))
    errors = manifest["errors"] if "errors" in manifest else _read_errors_file(source)
    return LazyResults(
        source, lazy, manifest, score_columns, higher_is_better_of(manifest, score_columns), list(errors)
    )


# -- manifests: metrics, directions, configs --------------------------------------------------------------


def metric_entries(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifest's metrics as a list of ``{"name", "config", ...}`` dicts, whatever form it was written in.

    Example:
        >>> metric_entries({"metrics": {"bertscore": {"idf": True}}})
        [{'name': 'bertscore', 'config': {'idf': True}}]
    """
    metrics = manifest.get("metrics")
    if isinstance(metrics, Mapping):
        return [
            {"name": str(name), "config": dict(config) if isinstance(config, Mapping) else {}}
            for name, config in metrics.items()
        ]
    if isinstance(metrics, list):
        return [
            dict(item) if isinstance(item, Mapping) else {"name": str(item), "config": {}} for item in metrics
        ]
    return []


def metric_of_column(column: str, metric_names: Sequence[str]) -> str | None:
    """The metric that wrote a score column: the longest name that prefixes it (``bartscore`` vs
    ``bartscore_faithfulness``).

    Example:
        >>> metric_of_column("bartscore_faithfulness_score", ["bartscore", "bartscore_faithfulness"])
        'bartscore_faithfulness'
    """
    matches = [name for name in metric_names if column.startswith(f"{name}_")]
    return max(matches, key=len) if matches else None


def higher_is_better_of(manifest: Mapping[str, Any], score_columns: Sequence[str] = ()) -> dict[str, bool]:
    """Each score column's direction, from the manifest's metrics (and its ``higher_is_better`` map).

    Columns the manifest says nothing about are left out (callers treat them as higher-is-better).

    Example:
        >>> manifest = {"metrics": [{"name": "pii", "columns": ["pii_total"], "higher_is_better": False}]}
        >>> higher_is_better_of(manifest)
        {'pii_total': False}
    """
    directions: dict[str, bool] = {}
    entries = metric_entries(manifest)
    flagged = {
        entry["name"]: bool(entry["higher_is_better"]) for entry in entries if "higher_is_better" in entry
    }
    for entry in entries:
        if entry["name"] in flagged:
            for column in entry.get("columns") or []:
                directions[str(column)] = flagged[entry["name"]]
    for column in score_columns:
        if column not in directions:
            owner = metric_of_column(column, list(flagged))
            if owner is not None:
                directions[column] = flagged[owner]
    explicit = manifest.get("higher_is_better")
    if isinstance(explicit, Mapping):
        directions.update({str(column): bool(value) for column, value in explicit.items()})
    return directions


def config_differences(manifest_a: Mapping[str, Any], manifest_b: Mapping[str, Any]) -> list[str]:
    """Why two runs' scores may not be comparable: metric configs, fitted state or model weights that differ.

    One line per difference; an empty list means equal config hashes (and weights) for every shared metric.

    Example:
        >>> a = {"metrics": [{"name": "bertscore", "config": {"idf": False}, "config_hash": "aa"}]}
        >>> b = {"metrics": [{"name": "bertscore", "config": {"idf": True}, "config_hash": "bb"}]}
        >>> config_differences(a, b)
        ['bertscore: config hash differs (A aa, B bb): idf False → True']
    """
    entries_a = {entry["name"]: entry for entry in metric_entries(manifest_a)}
    entries_b = {entry["name"]: entry for entry in metric_entries(manifest_b)}
    lines: list[str] = []
    for name in [*entries_a, *(name for name in entries_b if name not in entries_a)]:
        if name not in entries_b:
            lines.append(f"{name}: only run A has this metric")
            continue
        if name not in entries_a:
            lines.append(f"{name}: only run B has this metric")
            continue
        entry_a, entry_b = entries_a[name], entries_b[name]
        config_a, config_b = entry_a.get("config") or {}, entry_b.get("config") or {}
        changed = [
            f"{key} {config_a.get(key, '(unset)')} → {config_b.get(key, '(unset)')}"
            for key in sorted(set(config_a) | set(config_b), key=str)
            if config_a.get(key) != config_b.get(key)
        ]
        hash_a, hash_b = entry_a.get("config_hash"), entry_b.get("config_hash")
        if hash_a and hash_b and hash_a != hash_b:
            detail = f": {', '.join(changed)}" if changed else " (a metric version change)"
            lines.append(f"{name}: config hash differs (A {hash_a}, B {hash_b}){detail}")
        elif changed:
            lines.append(f"{name}: config differs: {', '.join(changed)}")
        if entry_a.get("state_hash", "") != entry_b.get("state_hash", ""):
            lines.append(f"{name}: fitted corpus statistics (e.g. idf weights) differ")
    models_a, models_b = manifest_a.get("models"), manifest_b.get("models")
    if isinstance(models_a, Mapping) and isinstance(models_b, Mapping):
        for model in sorted(set(models_a) & set(models_b)):
            info_a, info_b = models_a[model], models_b[model]
            if not (isinstance(info_a, Mapping) and isinstance(info_b, Mapping)):
                continue
            weights_a, weights_b = info_a.get("weights_sha256"), info_b.get("weights_sha256")
            if weights_a and weights_b and weights_a != weights_b:
                lines.append(f"model {model}: weights differ (A {weights_a[:12]}, B {weights_b[:12]})")
    return lines


# -- comparing two runs --------------------------------------------------------------------------------

_COMPARISON_SCHEMA: dict[str, pl.DataType] = {
    "score": pl.String(),
    "higher_is_better": pl.Boolean(),
    "n": pl.Int64(),
    "mean_a": pl.Float64(),
    "mean_b": pl.Float64(),
    "diff": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "p_value": pl.Float64(),
    "wins": pl.Int64(),
    "ties": pl.Int64(),
    "losses": pl.Int64(),
    "verdict": pl.String(),
}


def paired_test(differences: np.ndarray, *, tie_tolerance: float = 0.0) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test that paired differences are centred on 0.

    Differences within ``tie_tolerance`` of 0 (ties) are dropped first (Wilcox's method), and NaNs
    too; no differences left gives 1.0. The exact distribution is used up to 50 differences without
    tied magnitudes, the normal approximation otherwise (as scipy's ``method="auto"``, without its
    warnings).

    Example:
        >>> paired_test(np.array([0.1, 0.2, 0.15, 0.3, 0.25, 0.05]))
        0.03125
    """
    data = np.asarray(differences, dtype=np.float64).ravel()
    data = data[~np.isnan(data)]
    data = data[np.abs(data) > tie_tolerance]
    if data.size == 0:
        return 1.0
    exact = data.size <= 50 and np.unique(np.abs(data)).size == data.size
    result = scipy.stats.wilcoxon(data, zero_method="wilcox", method="exact" if exact else "approx")
    return float(result.pvalue)


@dataclass(frozen=True)
class Comparison:
    """Run B against run A, paired on record id: one row per score column in :attr:`table`.

    ``table`` columns: ``score, higher_is_better, n`` (records scored in both), ``mean_a, mean_b`` (over
    those pairs), ``diff`` (mean of B − A), ``ci_low, ci_high`` (percentile bootstrap CI of ``diff``,
    resampling pairs), ``p_value`` (Wilcoxon signed-rank, :func:`paired_test`), ``wins, ties, losses``
    (records where B is better, equal, worse, by the metric's direction) and ``verdict``
    (``better`` / ``worse`` when the CI excludes 0 on that side, else ``not significant``).
    ``warnings`` lists config differences (:func:`config_differences`) and unpaired records.
    """

    table: pl.DataFrame
    paired: pl.DataFrame
    warnings: list[str]
    only_in_a: int
    only_in_b: int
    id_column: str = "id"
    confidence: float = 0.95

    @property
    def score_columns(self) -> list[str]:
        return self.table["score"].to_list()

    def changes(self, column: str) -> pl.DataFrame:
        """Per paired record: ``id, a, b, diff`` (B − A) and ``improvement`` (diff signed so that
        positive is better), worst first; records missing either score are left out."""
        _check_columns([column], self.score_columns, what="score column")
        higher = bool(self.table.filter(pl.col("score") == column)["higher_is_better"][0])
        a, b = pl.col(f"{column}\x00a"), pl.col(f"{column}\x00b")
        return (
            self.paired.select(
                pl.col(self.id_column).alias("id"), a.alias("a"), b.alias("b"), (b - a).alias("diff")
            )
            .filter(pl.col("diff").is_not_null() & pl.col("diff").is_not_nan())
            .with_columns((pl.col("diff") if higher else -pl.col("diff")).alias("improvement"))
            .sort("improvement", "id", maintain_order=True)
        )

    def any_worse(self) -> bool:
        """Whether any score got significantly worse (its CI lies wholly on the worse side)."""
        return bool((self.table["verdict"] == "worse").any())


def compare(
    a: Results,
    b: Results,
    *,
    score_columns: Sequence[str] | None = None,
    id_column: str = "id",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    tie_tolerance: float = 0.0,
) -> Comparison:
    """Compare run B with run A record by record (joined on ``id_column``); see :class:`Comparison`.

    By default every score column the two runs share is compared. A metric's direction comes from
    the runs (``higher_is_better``, else their manifests; higher is better when neither says).
    The bootstrap is seeded, so the CLI (``evalsuite compare``) and the dashboard print the same numbers.

    Example:
        >>> a = Results(pl.DataFrame({"id": ["x", "y", "z"], "m_s": [0.5, 0.6, 0.7]}), score_columns=["m_s"])
        >>> b = Results(pl.DataFrame({"id": ["x", "y", "z"], "m_s": [0.6, 0.6, 0.9]}), score_columns=["m_s"])
        >>> row = compare(a, b).table.row(0, named=True)
        >>> round(row["diff"], 3), row["wins"], row["ties"], row["losses"]
        (0.1, 2, 1, 0)
    """
    _check_confidence(confidence)
    if tie_tolerance < 0:
        raise ConfigError(f"tie_tolerance must be >= 0, got {tie_tolerance!r}")
    if score_columns is None:
        columns = [column for column in a.score_columns if column in b.score_columns]
        if not columns:
            raise ConfigError(
                f"runs A and B share no score column; A has {a.score_columns}, B has {b.score_columns}"
            )
    else:
        columns = list(dict.fromkeys(score_columns))
        _check_columns(columns, a.score_columns, what="score column of run A")
        _check_columns(columns, b.score_columns, what="score column of run B")
    sides = []
    for label, res in (("A", a), ("B", b)):
        if id_column not in res.table.columns:
            raise ConfigError(f"run {label} has no {id_column!r} column to pair records on")
        side = res.table.select(
            pl.col(id_column).cast(pl.String),
            *[pl.col(column).cast(pl.Float64).alias(f"{column}\x00{label.lower()}") for column in columns],
        )
        duplicated = side.filter(pl.col(id_column).is_duplicated())[id_column].unique().sort()
        if duplicated.len():
            shown = ", ".join(map(repr, duplicated.head(5).to_list()))
            raise ConfigError(
                f"run {label} has {duplicated.len()} duplicated {id_column} value(s) ({shown}); "
                "records must have unique ids to be paired"
            )
        sides.append(side)
    paired = sides[0].join(sides[1], on=id_column, how="inner", maintain_order="left")
    only_in_a, only_in_b = sides[0].height - paired.height, sides[1].height - paired.height
    directions = {
        **higher_is_better_of(a.manifest, columns),
        **a.higher_is_better,
        **higher_is_better_of(b.manifest, columns),
        **b.higher_is_better,
    }
    rows = [
        _compare_column(
            column,
            paired[f"{column}\x00a"].to_numpy(),
            paired[f"{column}\x00b"].to_numpy(),
            higher_is_better=directions.get(column, True),
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
            tie_tolerance=tie_tolerance,
        )
        for column in columns
    ]
    warnings = config_differences(a.manifest, b.manifest)
    if only_in_a or only_in_b:
        warnings.append(
            f"{paired.height} records are paired; {only_in_a} only in run A and {only_in_b} only in run B "
            "are left out"
        )
    return Comparison(
        pl.DataFrame(rows, schema=_COMPARISON_SCHEMA),
        paired,
        warnings,
        only_in_a,
        only_in_b,
        id_column=id_column,
        confidence=confidence,
    )


def _compare_column(
    column: str,
    values_a: np.ndarray,
    values_b: np.ndarray,
    *,
    higher_is_better: bool,
    confidence: float,
    n_resamples: int,
    seed: int,
    tie_tolerance: float,
) -> dict[str, Any]:
    values_a = np.asarray(values_a, dtype=np.float64)
    values_b = np.asarray(values_b, dtype=np.float64)
    present = ~(np.isnan(values_a) | np.isnan(values_b))
    values_a, values_b = values_a[present], values_b[present]
    differences = values_b - values_a
    n = int(differences.size)
    improvement = differences if higher_is_better else -differences
    wins = int((improvement > tie_tolerance).sum())
    losses = int((improvement < -tie_tolerance).sum())
    # The paired bootstrap: resampling record pairs is resampling their differences.
    low, high = bootstrap_ci(differences, confidence=confidence, n_resamples=n_resamples, seed=seed)
    verdict = "not significant"
    if n and (low > 0 or high < 0):
        verdict = "better" if (low > 0) == higher_is_better else "worse"
    return {
        "score": column,
        "higher_is_better": higher_is_better,
        "n": n,
        "mean_a": float(values_a.mean()) if n else None,
        "mean_b": float(values_b.mean()) if n else None,
        "diff": float(differences.mean()) if n else None,
        "ci_low": low if n else None,
        "ci_high": high if n else None,
        "p_value": paired_test(differences, tie_tolerance=tie_tolerance) if n else None,
        "wins": wins,
        "ties": n - wins - losses,
        "losses": losses,
        "verdict": verdict,
    }
