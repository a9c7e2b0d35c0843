"""evalsuite: evaluate LLM outputs with small models.

The public API, imported lazily so that ``import evalsuite`` stays cheap (no torch, no models)::

    import evalsuite
    res = evalsuite.score("answers.jsonl", metrics=["bertscore"])
    res.assert_thresholds({"bertscore_f1": 0.8})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evalsuite._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "score": "evalsuite.api",
    "Scorer": "evalsuite.api",
    "Results": "evalsuite.results",
    "list_metrics": "evalsuite.registry",
    "load_metric": "evalsuite.registry",
    "register_metric": "evalsuite.registry",
    "Metric": "evalsuite.registry",
    "EvalsuiteError": "evalsuite.errors",
    "ConfigError": "evalsuite.errors",
    "InputError": "evalsuite.errors",
    "ModelUnavailableError": "evalsuite.errors",
    "MissingDependencyError": "evalsuite.errors",
    "ThresholdError": "evalsuite.errors",
    "UnknownMetricError": "evalsuite.errors",
    "ResumeError": "evalsuite.errors",
    "Client": "evalsuite.client",
    "ServiceError": "evalsuite.client",
    "log_to_mlflow": "evalsuite.integrations.mlflow",
    "write_report": "evalsuite.report",
}

__all__ = [
    "Client",
    "ConfigError",
    "EvalsuiteError",
    "InputError",
    "Metric",
    "MissingDependencyError",
    "ModelUnavailableError",
    "Results",
    "ResumeError",
    "Scorer",
    "ServiceError",
    "ThresholdError",
    "UnknownMetricError",
    "__version__",
    "list_metrics",
    "load_metric",
    "log_to_mlflow",
    "register_metric",
    "score",
    "write_report",
]

if TYPE_CHECKING:
    from evalsuite.api import Scorer, score
    from evalsuite.client import Client, ServiceError
    from evalsuite.errors import (
        ConfigError,
        EvalsuiteError,
        InputError,
        MissingDependencyError,
        ModelUnavailableError,
        ResumeError,
        ThresholdError,
        UnknownMetricError,
    )
    from evalsuite.integrations.mlflow import log_to_mlflow
    from evalsuite.registry import Metric, list_metrics, load_metric, register_metric
    from evalsuite.report import write_report
    from evalsuite.results import Results


__getattr__ = lazy_exports(globals(), _EXPORTS)
