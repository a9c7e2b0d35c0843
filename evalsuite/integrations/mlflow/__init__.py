"""MLflow tracking: a scored run logged as an MLflow run, and evalsuite metrics inside MLflow's evaluations.

- :func:`log_to_mlflow` (:mod:`~evalsuite.integrations.mlflow.tracking`) logs a result file
  (``evalsuite score --mlflow``, :meth:`Scorer.score_file <evalsuite.api.Scorer.score_file>`,
  :meth:`Results.write <evalsuite.results.Results.write>`): the summary as metrics, metric configs as
  params, hashes and versions as tags, and the result file, its manifest, its errors file and a report
  as artifacts.
- :func:`mlflow_scorer` (:mod:`~evalsuite.integrations.mlflow.scorers`) makes an evalsuite metric a
  scorer of ``mlflow.genai.evaluate``; :func:`mlflow_metric` an extra metric of the classic
  ``mlflow.models.evaluate``.

mlflow is imported inside the functions (the ``mlflow`` extra: ``pip install 'evalsuite[mlflow]'``),
so importing this package costs nothing.

Example:
    >>> import evalsuite
    >>> evalsuite.log_to_mlflow("answers.scores.jsonl", experiment="nightly")  # doctest: +SKIP
    '3f0c9a...'
    >>> mlflow.genai.evaluate(data=rows, scorers=[mlflow_scorer("bertscore")])  # doctest: +SKIP
"""

from evalsuite.integrations.mlflow.scorers import mlflow_metric, mlflow_record, mlflow_scorer
from evalsuite.integrations.mlflow.tracking import (
    DEFAULT_EXPERIMENT,
    MlflowLoggingError,
    log_to_mlflow,
    require_mlflow,
    resolve_tracking_uri,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "MlflowLoggingError",
    "log_to_mlflow",
    "mlflow_metric",
    "mlflow_record",
    "mlflow_scorer",
    "require_mlflow",
    "resolve_tracking_uri",
]
