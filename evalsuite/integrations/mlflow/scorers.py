"""evalsuite metrics inside MLflow's evaluations: :func:`mlflow_scorer` (``mlflow.genai.evaluate``) and
:func:`mlflow_metric` (``mlflow.models.evaluate``); see :mod:`evalsuite.integrations.mlflow`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evalsuite.errors import ConfigError, InputError, MissingDependencyError
from evalsuite.integrations.mlflow.tracking import require_mlflow
from evalsuite.results import MetricInfo

if TYPE_CHECKING:
    from mlflow.genai.scorers import Scorer as MlflowScorer
    from mlflow.models import EvaluationMetric

    from evalsuite.api import OnError, Scorer
    from evalsuite.registry import Metric
    from evalsuite.results import Results

__all__ = ["mlflow_metric", "mlflow_record", "mlflow_scorer"]

# Where a record's fields are found in MLflow's inputs, outputs and expectations (the first key present).
_PREDICTION_KEYS = ("response", "output", "outputs", "answer", "prediction", "text", "content")
_REFERENCE_KEYS = ("expected_response", "references", "reference", "expected_output", "expected_answer")
_PROMPT_KEYS = ("question", "prompt", "query", "request", "input")
_SOURCE_KEYS = ("context", "source", "document")
_WHERE_FIELDS_COME_FROM = {
    "prediction": "outputs: a string, or a dict with 'response' (mlflow.models.evaluate: predictions)",
    "references": "expectations['expected_response']: a string or a list of strings "
    "(mlflow.models.evaluate: targets)",
    "source": "inputs['context']: a string or a list of strings (mlflow.models.evaluate: a context column)",
    "prompt": "inputs['question'], or inputs as a string (mlflow.models.evaluate: an inputs column)",
    "samples": "outputs['samples']: a list of strings",
}


def mlflow_scorer(metric: str | Metric, *, column: str | None = None, **metric_config: Any) -> MlflowScorer:
    """An evalsuite metric as a scorer of ``mlflow.genai.evaluate(scorers=[...])``, named by its column.

    Each row's ``inputs``, ``outputs`` and ``expectations`` become an evalsuite record (see
    :func:`mlflow_record`); the scorer returns the score in ``column``: by default the metric's F1
    (``bertscore_f1``), F, total, overall or mean score, whichever it has, else its first score column.
    ``metric_config`` configures a metric given by name (``mlflow_scorer("bertscore", idf=False)``).

    The metric's models load on the first row and stay loaded; rows are scored one at a time (MLflow
    calls scorers per row, from several threads), so a metric that fits corpus statistics (``idf``)
    sees one record: use :func:`mlflow_metric` for those. A row the metric cannot score raises
    :class:`~evalsuite.errors.InputError`, which MLflow records as that row's error.

    Example:
        >>> rows = [{"inputs": {"question": "Capital of France?"}, "outputs": "Paris.",
        ...          "expectations": {"expected_response": "Paris is the capital."}}]
        >>> mlflow.genai.evaluate(data=rows, scorers=[mlflow_scorer("embedding_similarity")])  # doctest: +SKIP
    """
    require_mlflow("mlflow_scorer")
    from mlflow.genai.scorers import scorer

    shared = _SharedScorer(_build_metric(metric, metric_config))
    chosen = shared.column(column)

    def evalsuite_metric(inputs: Any = None, outputs: Any = None, expectations: Any = None) -> float:
        record = mlflow_record(inputs, outputs, expectations)
        shared.check_fields([record])
        return _as_float(shared.score([record], on_error="fail")[chosen][0])

    description = f"evalsuite metric {shared.metric.name} ({chosen}): {shared.metric.description}"
    return scorer(evalsuite_metric, name=chosen, description=description.rstrip(": "))


def mlflow_metric(
    metric: str | Metric, *, column: str | None = None, **metric_config: Any
) -> EvaluationMetric:
    """An evalsuite metric as an extra metric of the classic ``mlflow.models.evaluate(extra_metrics=[...])``.

    All rows are scored in one batch: ``predictions`` are the predictions, ``targets`` the references,
    and an ``inputs`` and a ``context`` column (or those mapped to them with ``col_mapping``) the prompt
    and the source. The per-row scores are ``column`` (chosen as for :func:`mlflow_scorer`); the
    aggregates are evalsuite's summary: ``mean``, ``std``, ``ci_low``, ``ci_high`` (a 95% bootstrap CI)
    and ``errors``, the rows that could not be scored (their scores are NaN).

    Needs ``mlflow.metrics.make_metric`` (MLflow 2.x and 3.x); raises
    :class:`~evalsuite.errors.MissingDependencyError` where it is gone.

    Example:
        >>> mlflow.models.evaluate(data=frame, predictions="answer", targets="gold",
        ...                        extra_metrics=[mlflow_metric("bertscore")])  # doctest: +SKIP
    """
    require_mlflow("mlflow_metric")
    try:
        from mlflow.metrics import MetricValue, make_metric
    except ImportError as error:
        import mlflow

        raise MissingDependencyError(
            f"mlflow_metric needs mlflow.metrics.make_metric, which MLflow {mlflow.__version__} does not "
            "have; use mlflow_scorer with mlflow.genai.evaluate instead"
        ) from error

    shared = _SharedScorer(_build_metric(metric, metric_config))
    chosen = shared.column(column)

    def eval_fn(
        predictions: Any, targets: Any = None, inputs: Any = None, context: Any = None
    ) -> MetricValue:
        # MLflow passes the columns by these parameter names (pandas Series); absent ones keep the default.
        import polars as pl

        count = len(predictions)
        records = []
        for i in range(count):
            record = mlflow_record(
                None if inputs is None else inputs.iloc[i],
                predictions.iloc[i],
                None if targets is None else targets.iloc[i],
            )
            if context is not None and context.iloc[i] is not None:
                record["source"] = _text_of(context.iloc[i])
            records.append({"id": str(i), **record})
        shared.check_fields(records, every=False)
        results = shared.score(records, on_error="skip")
        by_id = dict(zip(results.table["id"].to_list(), results.table[chosen].to_list(), strict=True))
        scores = [_as_float(by_id.get(str(i))) for i in range(count)]
        summary = results.summary().filter(pl.col("score") == chosen).row(0, named=True)
        aggregates = {
            name: float(summary[name])
            for name in ("mean", "std", "ci_low", "ci_high")
            if summary[name] is not None and not math.isnan(summary[name])
        }
        aggregates["errors"] = float(len(results.errors))
        return MetricValue(scores=scores, aggregate_results=aggregates)

    return make_metric(eval_fn=eval_fn, greater_is_better=shared.metric.higher_is_better, name=chosen)


def mlflow_record(inputs: Any = None, outputs: Any = None, expectations: Any = None) -> dict[str, Any]:
    """An evalsuite record from an MLflow row's ``inputs``, ``outputs`` and ``expectations``.

    - ``prediction``: ``outputs`` as a string, or the first of its keys ``response``, ``output``,
      ``outputs``, ``answer``, ``prediction``, ``text``, ``content``; ``samples``: ``outputs["samples"]``
    - ``references``: ``expectations`` as a string or list of strings, or the first of its keys
      ``expected_response``, ``references``, ``reference``, ``expected_output``, ``expected_answer``
    - ``prompt``: ``inputs`` as a string, or the first of its keys ``question``, ``prompt``, ``query``,
      ``request``, ``input``; ``source``: its key ``context``, ``source`` or ``document`` (a list of
      strings, such as retrieved passages, is joined with blank lines)

    Fields not found are left out; the values are checked when the record is scored.

    Example:
        >>> mlflow_record({"question": "Capital?", "context": ["France...", "Paris..."]}, {"response": "Paris."},
        ...               {"expected_response": "Paris"})
        {'prediction': 'Paris.', 'references': 'Paris', 'prompt': 'Capital?', 'source': 'France...\\n\\nParis...'}
    """
    record: dict[str, Any] = {}
    if isinstance(outputs, Mapping):
        record["prediction"] = _first(outputs, _PREDICTION_KEYS)
        record["samples"] = outputs.get("samples")
    else:
        record["prediction"] = outputs
    record["references"] = (
        _first(expectations, _REFERENCE_KEYS) if isinstance(expectations, Mapping) else expectations
    )
    if isinstance(inputs, Mapping):
        record["prompt"] = _first(inputs, _PROMPT_KEYS)
        record["source"] = _text_of(_first(inputs, _SOURCE_KEYS))
    else:
        record["prompt"] = inputs
    return {name: value for name, value in record.items() if value is not None}


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((mapping[key] for key in keys if mapping.get(key) is not None), None)


def _text_of(value: Any) -> Any:
    """Passages (a list of strings) as one text; anything else unchanged (checked later)."""
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return "\n\n".join(value)
    return value


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _build_metric(metric: str | Metric, config: Mapping[str, Any]) -> Metric:
    from evalsuite.registry import Metric, load_metric

    if isinstance(metric, Metric):
        if config:
            raise ConfigError(
                f"metric options {sorted(config)} apply to a metric given by name, got the instance {metric!r}"
            )
        return metric
    return load_metric(metric, **config)


class _SharedScorer:
    """The one evalsuite Scorer behind an MLflow scorer or metric: built on first use (its models load once)
    and used by one thread at a time, as MLflow calls scorers from a thread pool."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric
        self._scorer: Scorer | None = None
        self._lock = threading.Lock()

    def column(self, column: str | None) -> str:
        """``column``, checked, or the metric's headline score column."""
        columns = self.metric.columns
        if column is not None:
            if column not in columns:
                raise ConfigError(
                    f"column must be one of {columns} (metric {self.metric.name!r}), got {column!r}"
                )
            return column
        headline = MetricInfo(self.metric.name, tuple(columns)).primary_column
        if headline is None:
            raise ConfigError(f"metric {self.metric.name!r} writes no score column to report")
        return headline

    def check_fields(self, records: Sequence[Mapping[str, Any]], *, every: bool = True) -> None:
        """Raise :class:`InputError` naming where MLflow's data should hold a field the metric needs that is
        missing (from any record; with ``every=False``, from all of them: a column not given)."""
        missing = [
            name
            for name in self.metric.fields
            if (any if every else all)(name not in record for record in records)
        ]
        if missing:
            where = "; ".join(f"'{name}' from {_WHERE_FIELDS_COME_FROM.get(name, name)}" for name in missing)
            raise InputError(f"metric {self.metric.name!r} needs {where}", field=missing[0])

    def score(self, records: list[dict[str, Any]], *, on_error: OnError) -> Results:
        from evalsuite.api import Scorer

        with self._lock:
            if self._scorer is None:
                # No score cache: MLflow holds this object for as long as it likes, and rows rarely repeat.
                self._scorer = Scorer([self.metric], cache=False)
            return self._scorer.score(records, on_error=on_error)
