"""The Metric protocol and registry for metric authors (they live in :mod:`evalsuite.registry`)."""

from evalsuite.registry import (
    BUILTIN_METRICS,
    ENTRY_POINT_GROUP,
    Metric,
    ScoreFailure,
    Scores,
    _registered,
    get_metric_class,
    list_metrics,
    load_metric,
    register_metric,
)

__all__ = [
    "BUILTIN_METRICS",
    "ENTRY_POINT_GROUP",
    "Metric",
    "ScoreFailure",
    "Scores",
    "_registered",
    "get_metric_class",
    "list_metrics",
    "load_metric",
    "register_metric",
]
