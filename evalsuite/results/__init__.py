"""Results of scoring runs: the table, statistics (bootstrap CIs, paired tests), files, comparison.

- :mod:`~evalsuite.results.table`: :class:`Results`, one run's per-record table, summary and thresholds
- :mod:`~evalsuite.results.stats`: :func:`bootstrap_ci`, :func:`summarize`, :func:`paired_test`
- :mod:`~evalsuite.results.files` and :mod:`~evalsuite.results.lazy`: reading result files,
  :func:`scan_results` / :class:`LazyResults`
- :mod:`~evalsuite.results.compare`: :func:`compare` / :class:`Comparison`
- :mod:`~evalsuite.results.metrics`: :class:`MetricInfo`, which columns belong to which metric

The run manifest lives in :mod:`evalsuite.manifest`; its helpers are re-exported here for code that
imported them from ``evalsuite.results``.
"""

from evalsuite.manifest import (
    config_differences,
    higher_is_better_of,
    manifest_path,
    metric_entries,
    metric_of_column,
    read_manifest,
    write_manifest,
)
from evalsuite.results.checks import UnknownColumnError
from evalsuite.results.compare import Comparison, compare
from evalsuite.results.lazy import LazyResults, scan_results
from evalsuite.results.metrics import MetricInfo, metrics_of
from evalsuite.results.stats import bootstrap_ci, histogram, paired_test, summarize
from evalsuite.results.table import Results

__all__ = [
    "Comparison",
    "LazyResults",
    "MetricInfo",
    "Results",
    "UnknownColumnError",
    "bootstrap_ci",
    "compare",
    "config_differences",
    "higher_is_better_of",
    "histogram",
    "manifest_path",
    "metric_entries",
    "metric_of_column",
    "metrics_of",
    "paired_test",
    "read_manifest",
    "scan_results",
    "summarize",
    "write_manifest",
]
