"""Split-conformal prediction sets and intervals (MAPIE), and agreement probabilities for regression.

A fitted model is conformalized on a held-out calibration split it never saw: prediction sets
(LAC score, 1 − p(true class)) or intervals (absolute residual) then hold the judge's label with
probability at least ``coverage`` on new records from the same distribution (marginally, on average
over records). MAPIE does the conformal part; this module only shapes its inputs and outputs.

Example:
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(600, 1)); y = (x[:, 0] + rng.normal(size=600) > 0).astype(int)
    >>> model = LogisticRegression().fit(x[:300], y[:300])
    >>> conformal = conformalize_classifier(model, x[300:], y[300:], coverage=0.9)
    >>> prediction_sets(conformal, x[:3]).shape
    (3, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite.errors import ConfigError, MissingDependencyError

__all__ = [
    "agreement_probability",
    "conformalize_classifier",
    "conformalize_regressor",
    "interval_coverage",
    "prediction_intervals",
    "prediction_sets",
    "set_coverage",
]


def conformalize_classifier(
    estimator: Any, features: np.ndarray, target: np.ndarray, *, coverage: float
) -> Any:
    """A MAPIE ``SplitConformalClassifier`` around the fitted ``estimator``, calibrated on (features, target)."""
    _check_coverage(coverage)
    classification = _mapie("classification")
    conformal = classification.SplitConformalClassifier(
        estimator=estimator, confidence_level=coverage, conformity_score="lac", prefit=True
    )
    conformal.conformalize(features, target)
    return conformal


def conformalize_regressor(
    estimator: Any, features: np.ndarray, target: np.ndarray, *, coverage: float
) -> Any:
    """A MAPIE ``SplitConformalRegressor`` (absolute residuals) around the fitted ``estimator``."""
    _check_coverage(coverage)
    regression = _mapie("regression")
    conformal = regression.SplitConformalRegressor(
        estimator=estimator, confidence_level=coverage, conformity_score="absolute", prefit=True
    )
    conformal.conformalize(features, target)
    return conformal


def prediction_sets(conformal: Any, features: np.ndarray) -> np.ndarray:
    """Boolean ``[records, classes]``: which classes each record's prediction set holds."""
    _, sets = conformal.predict_set(features)
    return np.asarray(sets[:, :, 0], dtype=bool)


def prediction_intervals(conformal: Any, features: np.ndarray) -> np.ndarray:
    """``[records, 2]``: the lower and upper bound of each record's interval."""
    _, intervals = conformal.predict_interval(features)
    return np.asarray(intervals[:, :, 0], dtype=np.float64)


def set_coverage(sets: np.ndarray, target: np.ndarray) -> float:
    """Share of records whose prediction set holds their class index ``target``.

    Example:
        >>> set_coverage(np.array([[True, False], [True, True]]), np.array([1, 0]))
        0.5
    """
    target = np.asarray(target, dtype=np.int64)
    return float(np.asarray(sets, dtype=bool)[np.arange(target.size), target].mean())


def interval_coverage(intervals: np.ndarray, target: np.ndarray) -> float:
    """Share of records whose interval holds their value.

    Example:
        >>> interval_coverage(np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([0.5, 4.0]))
        0.5
    """
    target = np.asarray(target, dtype=np.float64)
    return float(((intervals[:, 0] <= target) & (target <= intervals[:, 1])).mean())


def agreement_probability(scale: np.ndarray, tolerance: float, calibration_scores: np.ndarray) -> np.ndarray:
    """P(|judge − prediction| ≤ tolerance) per record, for a regression proxy.

    ``scale`` is each record's predicted residual size and ``calibration_scores`` the held-out
    residuals divided by their predicted size; the probability is the share of calibration records
    whose normalised residual is within ``tolerance / scale`` (the empirical distribution of the
    normalised residual, as in normalised split-conformal regression).

    Example:
        >>> agreement_probability(np.array([1.0, 2.0]), 1.0, np.array([0.25, 0.75, 1.5, 3.0])).tolist()
        [0.5, 0.25]
    """
    if tolerance <= 0:
        raise ConfigError(f"tolerance must be positive, got {tolerance!r}")
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    if not scores.size:
        raise ConfigError("agreement probabilities need at least one calibration residual")
    limits = tolerance / np.maximum(np.asarray(scale, dtype=np.float64), 1e-12)
    return np.searchsorted(scores, limits, side="right") / scores.size


def _check_coverage(coverage: float) -> None:
    if not 0.0 < coverage < 1.0:
        raise ConfigError(f"coverage must be strictly between 0 and 1, got {coverage!r}")


def _mapie(module: str) -> Any:
    try:
        if module == "classification":
            import mapie.classification as loaded
        else:
            import mapie.regression as loaded
    except ImportError as error:
        raise MissingDependencyError(
            "conformal prediction needs MAPIE: pip install 'mapie>=1.6' (or the evalsuite extra that lists it)"
        ) from error
    return loaded
