"""Bridges from evalsuite to other tools; each imports its tool only when called (an optional extra).

- :mod:`~evalsuite.integrations.mlflow`: :func:`log_to_mlflow` (a scored run as an MLflow run),
  :func:`mlflow_scorer` and :func:`mlflow_metric` (evalsuite metrics inside MLflow's evaluations);
  the ``mlflow`` extra
"""
