"""Comparing two runs record by record: paired bootstrap CIs, signed-rank p-values, wins/ties/losses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from evalsuite.errors import ConfigError
from evalsuite.manifest import config_differences, higher_is_better_of
from evalsuite.results.checks import check_columns, check_confidence
from evalsuite.results.stats import bootstrap_ci, paired_test

if TYPE_CHECKING:
    import numpy as np

    from evalsuite.results.table import Results

__all__ = ["Comparison", "compare"]

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
        check_columns([column], self.score_columns, what="score column")
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
        >>> from evalsuite.results import Results
        >>> a = Results(pl.DataFrame({"id": ["x", "y", "z"], "m_s": [0.5, 0.6, 0.7]}), score_columns=["m_s"])
        >>> b = Results(pl.DataFrame({"id": ["x", "y", "z"], "m_s": [0.6, 0.6, 0.9]}), score_columns=["m_s"])
        >>> row = compare(a, b).table.row(0, named=True)
        >>> round(row["diff"], 3), row["wins"], row["ties"], row["losses"]
        (0.1, 2, 1, 0)
    """
    check_confidence(confidence)
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
        check_columns(columns, a.score_columns, what="score column of run A")
        check_columns(columns, b.score_columns, what="score column of run B")
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
    if paired.height == 0:
        examples = [", ".join(map(repr, side[id_column].head(3).to_list())) or "none" for side in sides]
        raise ConfigError(
            f"runs A and B have no record {id_column} in common (A has {sides[0].height} records, e.g. "
            f"{examples[0]}; B has {sides[1].height}, e.g. {examples[1]}): were they scored on the same input?"
        )
    manifest_a, manifest_b = a.run_manifest, b.run_manifest
    directions = {
        **higher_is_better_of(manifest_a, columns),
        **a.higher_is_better,
        **higher_is_better_of(manifest_b, columns),
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
    warnings = config_differences(manifest_a, manifest_b)
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
    import numpy as np

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
