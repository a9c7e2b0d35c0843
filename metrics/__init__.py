"""evalsuite's metric families: pure scoring functions plus thin registered classes."""

from metrics.base import Metric, get_metric_class, list_metrics, load_metric, register_metric

__all__ = ["Metric", "get_metric_class", "list_metrics", "load_metric", "register_metric"]
