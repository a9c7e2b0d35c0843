"""Which columns of a run belong to which metric: its scores, its evidence, its direction and config.

Read from the manifest, or inferred from the score columns when a run has none (columns grouped by
the prefix before their last ``_``). The dashboard and the static report both show runs metric by
metric from this one reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evalsuite.manifest import MetricEntry, metric_of_column
from evalsuite.records import CANONICAL_FIELDS

if TYPE_CHECKING:
    from evalsuite.results.lazy import LazyResults

__all__ = ["MetricInfo", "metrics_of"]

# The column a metric is summed up and ranked by, by suffix preference (else its first score column).
_PRIMARY_SUFFIXES = ("f1", "f", "overall", "total", "mean", "score", "rating", "probability")


@dataclass(frozen=True)
class MetricInfo:
    """One metric of a run, from its manifest (or inferred from the score columns when there is none)."""

    name: str
    columns: tuple[str, ...]
    detail_columns: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    higher_is_better: bool = True
    models: tuple[str, ...] = ()

    @property
    def primary_column(self) -> str | None:
        """The column the metric is summed up and ranked by: ``bertscore_f1``, ``pii_total``,
        ``selfcheck_nli_mean``..., else its first score column (None without one).

        >>> MetricInfo("pii", ("pii_email", "pii_total")).primary_column
        'pii_total'
        """
        for suffix in _PRIMARY_SUFFIXES:
            if f"{self.name}_{suffix}" in self.columns:
                return f"{self.name}_{suffix}"
        return self.columns[0] if self.columns else None


def metrics_of(results: LazyResults) -> list[MetricInfo]:
    """The run's metrics in manifest order, then any score columns the manifest does not name."""
    manifest = results.run_manifest
    names = manifest.metric_names
    columns_of: dict[str, list[str]] = {name: [] for name in names}
    orphans: dict[str, list[str]] = {}
    for column in results.score_columns:
        owner = metric_of_column(column, names)
        if owner is None:
            # No manifest (or a column it does not name): group by the prefix before the last "_".
            owner = column.rsplit("_", 1)[0] if "_" in column else column
            orphans.setdefault(owner, []).append(column)
        else:
            columns_of[owner].append(column)
    schema = results.table.collect_schema()
    # Evidence columns: as the manifest lists them, else the nested columns named after the metric.
    nested = [name for name, dtype in schema.items() if dtype.is_nested() and name not in CANONICAL_FIELDS]

    def details_of(entry: MetricEntry) -> tuple[str, ...]:
        if entry.detail_columns is not None:
            return tuple(c for c in entry.detail_columns if c in schema)
        return tuple(c for c in nested if metric_of_column(c, names) == entry.name)

    metrics = [
        MetricInfo(
            name=entry.name,
            columns=tuple(columns_of[entry.name]),
            detail_columns=details_of(entry),
            config=dict(entry.config),
            config_hash=entry.config_hash or "",
            higher_is_better=_direction(entry, columns_of[entry.name], results.higher_is_better),
            models=tuple(entry.models or ()),
        )
        for entry in manifest.metrics
    ]
    metrics += [
        MetricInfo(name, tuple(columns), higher_is_better=results.higher_is_better.get(columns[0], True))
        for name, columns in orphans.items()
    ]
    return metrics


def _direction(entry: MetricEntry, columns: Sequence[str], directions: Mapping[str, bool]) -> bool:
    if entry.higher_is_better is not None:
        return entry.higher_is_better
    return directions.get(columns[0], True) if columns else True
