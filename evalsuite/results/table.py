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

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from evalsuite.errors import ConfigError, ThresholdError
from evalsuite.manifest import (
    ManifestLike,
    RunManifest,
    SummaryRow,
    higher_is_better_of,
    manifest_path,
    score_columns_of,
    write_manifest,
)
from evalsuite.records import write_table_atomically
from evalsuite.results.checks import check_columns
from evalsuite.results.files import format_of, read_errors_file, read_table, require_suffix
from evalsuite.results.stats import present_values, summarize

if TYPE_CHECKING:
    from evalsuite.results.compare import Comparison

__all__ = ["Results"]


class Results:
    """Scores of one run: per-record table + summary + manifest.

    ``manifest`` (a :class:`~evalsuite.manifest.RunManifest` or a mapping, validated) is kept as its JSON
    dict, as :meth:`write` puts it on disk; :attr:`run_manifest` is the typed view.

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
        manifest: ManifestLike | None = None,
    ) -> None:
        if isinstance(score_columns, str):
            raise ConfigError(
                f"score_columns must be a sequence of column names, got the string {score_columns!r}"
            )
        check_columns(score_columns, table.columns, what="score column")
        self.table: pl.DataFrame = table
        self.score_columns: list[str] = list(score_columns)
        self.higher_is_better: dict[str, bool] = dict(higher_is_better or {})
        self.errors: list[dict[str, Any]] = [dict(error) for error in errors]
        # Validated and kept as its JSON dict, so a run in memory and read back have equal manifests.
        self.manifest: dict[str, Any] = RunManifest.coerce(manifest).to_json_dict()
        self._summary_cache: tuple[tuple[pl.DataFrame, tuple[str, ...], int, float], pl.DataFrame] | None = (
            None
        )

    @property
    def run_manifest(self) -> RunManifest:
        """The manifest, typed and validated (a new object each time: assign to :attr:`manifest` to change it)."""
        return RunManifest.coerce(self.manifest, where="the results' manifest")

    def summary(self, confidence: float = 0.95) -> pl.DataFrame:
        """Summary of every score column (see :func:`~evalsuite.results.summarize`).

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
        check_columns([column], self.table.columns, what="column")
        return self.table[column]

    def mean(self, column: str) -> float:
        """Mean of a column over its non-missing values (NaN when there are none).

        Example:
            >>> Results(pl.DataFrame({"x_y": [1.0, None, 3.0]}), score_columns=["x_y"]).mean("x_y")
            2.0
        """
        data = present_values(self[column])
        return float(data.mean()) if data.size else float("nan")

    def check_thresholds(self, thresholds: Mapping[str, float]) -> list[str]:
        """One line per score whose mean misses its threshold; an empty list means all pass.

        A mean must be ``>=`` its threshold, or ``<=`` where ``higher_is_better[column]`` is False.

        Example:
            >>> res = Results(pl.DataFrame({"x_y": [0.5, 0.7]}), score_columns=["x_y"])
            >>> res.check_thresholds({"x_y": 0.9})[0].startswith("x_y: mean 0.6 (95% CI")
            True
        """
        check_columns(list(thresholds), self.score_columns, what="score column")
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
        """This run (A) against ``other`` (B), paired on record id; see :func:`~evalsuite.results.compare`.

        Example:
            >>> Results.read("a.parquet").compare(Results.read("b.parquet")).table  # doctest: +SKIP
        """
        from evalsuite.results.compare import compare

        return compare(self, other, **options)

    def write(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Write the table (format from the extension: .parquet, .jsonl, .csv) and its manifest beside it.

        CSV cannot hold lists or mappings, so those columns are written as JSON text (and decoded by
        :meth:`read`). The manifest gains ``score_columns``, ``summary``, ``higher_is_better`` and ``errors``
        (and, for CSV, ``csv_json_columns``).

        Example:
            >>> res.write("run.parquet")  # also writes run.manifest.json  # doctest: +SKIP
            PosixPath('run.parquet')
        """
        target = pathlib.Path(path)
        suffix = format_of(target)
        manifest = RunManifest.coerce(self.manifest, where="the results' manifest")
        manifest.score_columns = self.score_columns
        manifest.summary = [SummaryRow.model_validate(row) for row in self.summary().iter_rows(named=True)]
        manifest.higher_is_better = self.higher_is_better
        manifest.errors = self.errors
        encoded = write_table_atomically(self.table, target)
        if suffix == ".csv":
            manifest.csv_json_columns = encoded
        write_manifest(manifest_path(target), manifest)
        return target

    def to_parquet(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Same as :meth:`write` with a ``.parquet`` path."""
        return self.write(require_suffix(path, ".parquet"))

    def to_jsonl(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Same as :meth:`write` with a ``.jsonl`` path."""
        return self.write(require_suffix(path, ".jsonl"))

    def to_csv(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Same as :meth:`write` with a ``.csv`` path."""
        return self.write(require_suffix(path, ".csv"))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Results:
        """Read a result file written by :meth:`write` (or the CLI), with its manifest when present.

        Score columns come from the manifest's ``score_columns``; failing that, every Float column named
        after one of its metrics; with no manifest at all, every Float column. Errors come from the
        manifest's ``errors``, else from ``<name>.errors.jsonl`` beside the file (the CLI's).

        Example:
            >>> res = Results.read("run.parquet")  # doctest: +SKIP
        """
        source = pathlib.Path(path)
        format_of(source)
        if not source.is_file():
            raise ConfigError(f"result file {str(source)!r} does not exist")
        manifest_file = manifest_path(source)
        manifest = RunManifest.read(manifest_file) if manifest_file.is_file() else RunManifest()
        table = read_table(source, manifest)
        score_columns = score_columns_of(table.schema, manifest)
        # JSONL and CSV lose the dtype of an all-null column (and NaN becomes null in JSONL).
        table = table.with_columns(pl.col(score_columns).cast(pl.Float64))
        return cls(
            table,
            score_columns=score_columns,
            # The CLI's manifests give directions per metric, Results.write's per column: both count.
            higher_is_better=higher_is_better_of(manifest, score_columns),
            errors=manifest.errors if manifest.errors is not None else read_errors_file(source),
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


def _format_against(value: float, reference: float) -> str:
    """``value`` to 3 significant digits, or more when fewer would print it equal to ``reference``."""
    for digits in range(3, 16):
        text = f"{value:.{digits}g}"
        if text != f"{reference:.{digits}g}":
            return text
    return repr(value)
