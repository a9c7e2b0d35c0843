"""Statistics of score columns: bootstrap confidence intervals, summaries, the paired signed-rank test.

Missing values (null or NaN) are left out of every statistic. numpy and scipy are imported by the
functions that use them, so importing :mod:`evalsuite.results` costs neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from evalsuite.errors import ConfigError
from evalsuite.results.checks import check_columns, check_confidence

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SUMMARY_SCHEMA", "bootstrap_ci", "histogram", "paired_test", "present_values", "summarize"]

# Upper bound on resampled values held in memory at once (8 bytes each), so a 100k-record column
# does not allocate n_resamples * n floats in one go.
_BOOTSTRAP_CHUNK_VALUES = 10_000_000

SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "score": pl.String(),
    "mean": pl.Float64(),
    "std": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "n": pl.Int64(),
    "errors": pl.Int64(),
}


def bootstrap_ci(
    values: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean; NaNs are dropped first.

    No values gives ``(nan, nan)``; one value, or all equal, gives ``(value, value)``.

    Example:
        >>> import numpy as np
        >>> low, high = bootstrap_ci(np.array([0.7, 0.8, 0.9, 0.85]))
        >>> low <= 0.8125 <= high
        True
    """
    import numpy as np

    check_confidence(confidence)
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[~np.isnan(data)]
    if data.size == 0:
        return (float("nan"), float("nan"))
    # Degenerate samples: the answer is known exactly (scipy would warn and return NaN).
    if data.size == 1 or bool(np.all(data == data[0])):
        return (float(data[0]), float(data[0]))
    # scipy.stats.bootstrap(method="percentile", vectorized=True, batch=...) step by step: the same
    # draws from the generator and the same interpolation, so the same interval to the last bit
    # (tests/evalsuite/test_results.py checks it against scipy), without importing scipy.stats
    # (a second of every CLI run).
    rng = np.random.default_rng(seed)
    batch = max(1, _BOOTSTRAP_CHUNK_VALUES // data.size)
    means = []
    for start in range(0, n_resamples, batch):
        indices = rng.integers(0, data.size, (min(batch, n_resamples - start), data.size))
        # A few resamples gathered at a time: the same means, three times faster than one
        # resamples × n array (it stays in the CPU cache).
        means += [data[indices[row : row + 128]].mean(axis=-1) for row in range(0, len(indices), 128)]
    distribution = np.sort(np.concatenate(means))
    alpha = (1 - confidence) / 2
    return (_linear_quantile(distribution, alpha), _linear_quantile(distribution, 1 - alpha))


def _linear_quantile(ordered: np.ndarray, p: float) -> float:
    """Quantile ``p`` of sorted values, interpolated as ``scipy.stats.quantile(method="linear")`` does."""
    position = p * ordered.size + (1 - p)
    upper = position // 1
    lower = upper - 1
    weight = 0.0 if lower < 0 else position % 1
    last = ordered.size - 1
    below = ordered[int(min(max(lower, 0), last))]
    above = ordered[int(min(max(upper, 0), last))]
    return float((1 - weight) * below + weight * above)


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
    check_confidence(confidence)
    lazy = table.lazy() if isinstance(table, pl.DataFrame) else table
    available = lazy.collect_schema().names()
    check_columns(score_columns, available, what="column")
    scores = lazy.select(list(dict.fromkeys(score_columns))).collect()
    rows: list[dict[str, Any]] = []
    for column in score_columns:
        data = present_values(scores[column])
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
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


def paired_test(differences: np.ndarray, *, tie_tolerance: float = 0.0) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test that paired differences are centred on 0.

    Differences within ``tie_tolerance`` of 0 (ties) are dropped first (Wilcox's method), and NaNs
    too; no differences left gives 1.0. The exact distribution is used up to 50 differences without
    tied magnitudes, the normal approximation otherwise (as scipy's ``method="auto"``, without its
    warnings).

    Example:
        >>> import numpy as np
        >>> paired_test(np.array([0.1, 0.2, 0.15, 0.3, 0.25, 0.05]))
        0.03125
    """
    import numpy as np

    data = np.asarray(differences, dtype=np.float64).ravel()
    data = data[~np.isnan(data)]
    data = data[np.abs(data) > tie_tolerance]
    if data.size == 0:
        return 1.0
    import scipy.stats

    exact = data.size <= 50 and np.unique(np.abs(data)).size == data.size
    result = scipy.stats.wilcoxon(data, zero_method="wilcox", method="exact" if exact else "approx")
    return float(result.pvalue)


def present_values(series: pl.Series) -> np.ndarray:
    """The non-missing values of a numeric column as float64; NaN counts as missing, like null."""
    import numpy as np

    data = series.drop_nulls().cast(pl.Float64).to_numpy()
    return data[~np.isnan(data)]


def histogram(
    lazy: pl.LazyFrame, column: str, *, bins: int = 30, bounds: tuple[float, float] | None = None
) -> pl.DataFrame:
    """Counts of ``column`` in ``bins`` equal-width bins over ``bounds`` (default: the data's range):
    columns ``start, end, count``; values outside the bounds are left out.

    Only the counts are collected, so a chart of a 100,000-record run embeds ``bins`` rows.
    """
    values = pl.col(column).fill_nan(None)
    if bounds is None:
        row = lazy.select(values.min().alias("low"), values.max().alias("high")).collect().row(0)
        if row[0] is None:
            return pl.DataFrame(schema={"start": pl.Float64, "end": pl.Float64, "count": pl.Int64})
        bounds = (float(row[0]), float(row[1]))
    low, high = bounds
    if high <= low:  # one distinct value: a single bin around it
        low, high, bins = low - 0.5, high + 0.5, 1
    width = (high - low) / bins
    counts = (
        lazy.select(values.alias("value"))
        .drop_nulls()
        .filter(pl.col("value").is_between(low, high))
        .select(((pl.col("value") - low) / width).floor().clip(0, bins - 1).cast(pl.Int64).alias("bin"))
        .group_by("bin")
        .len("count")
        .collect()
    )
    frame = pl.DataFrame({"bin": list(range(bins))}).join(counts, on="bin", how="left").fill_null(0)
    return frame.select(
        (low + pl.col("bin") * width).alias("start"),
        (low + (pl.col("bin") + 1) * width).alias("end"),
        pl.col("count").cast(pl.Int64),
    )
