"""Calibrated probabilities and verdicts for classifiers: temperature and Platt scaling, thresholds, ECE.

A :class:`Calibration` lives beside a model as ``calibration.json``. It is fitted on a labelled split
that no benchmark scores (a model's training holdout), so the probabilities and the verdict
threshold it yields are never tuned on the data they are reported on:

- ``temperature`` divides every logit of the classifier before the softmax (Guo et al., 2017): it
  keeps the argmax and makes the top-class confidence match the accuracy;
- ``slope`` and ``intercept`` map the log-odds of P(supported) through a logistic (Platt, 1999);
- ``threshold`` is the calibrated P(supported) at or above which the verdict is "supported",
  chosen for balanced accuracy on the same split.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evalsuite.errors import ConfigError

CALIBRATION_FILE = "calibration.json"
_EPSILON = 1e-7


@dataclass(frozen=True)
class Calibration:
    """How to turn a classifier's logits into calibrated probabilities and a verdict."""

    temperature: float = 1.0
    slope: float = 1.0
    intercept: float = 0.0
    threshold: float = 0.5
    fitted_on: str = ""  # what split, how many rows: provenance for the model card

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"calibration temperature must be a positive number, got {self.temperature!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"calibration threshold must be within [0, 1], got {self.threshold!r}")

    @classmethod
    def read(cls, model_dir: Path) -> Calibration | None:
        """The calibration saved beside a model, or None when it has none."""
        path = Path(model_dir) / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            values: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            fields = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
            return cls(**fields)
        except (json.JSONDecodeError, TypeError) as error:
            raise ConfigError(f"{path} is not a calibration file: {error}") from None

    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / CALIBRATION_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    def supported(self, probability: np.ndarray | float) -> np.ndarray:
        """Platt-scaled P(supported) from the (temperature-scaled) model probability."""
        return _sigmoid(self.slope * _logit(np.asarray(probability, dtype=np.float64)) + self.intercept)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def fit_temperature(logits: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` (golden-section search
    over log T in [1/20, 20]; the NLL is convex in 1/T, so the minimum is unique).

    ``labels`` are class indices, or an ``[n, classes]`` boolean mask of the classes each row may
    be (a partial label such as "not entailment": its likelihood is their total probability).
    """
    logits = np.asarray(logits, dtype=np.float64)
    target = np.asarray(labels)
    if target.ndim == 1 and len(target) and logits.ndim == 2:
        target = np.eye(logits.shape[1], dtype=bool)[target]
    if logits.ndim != 2 or target.shape != logits.shape or not len(target):
        raise ConfigError("fit_temperature needs an [n, classes] logit array and n labels, n > 0")

    def nll(log_t: float) -> float:
        probabilities = softmax(logits, math.exp(log_t))
        return float(-np.log((probabilities * target).sum(axis=1) + 1e-300).mean())

    low, high = math.log(1 / 20), math.log(20)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if nll(a) < nll(b):
            high = b
        else:
            low = a
    return math.exp((low + high) / 2)


def fit_platt(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[float, float]:
    """(slope, intercept) of a logistic regression of ``labels`` on the log-odds of ``probabilities``."""
    from sklearn.linear_model import LogisticRegression

    target = np.asarray(labels).astype(int)
    if len(set(target.tolist())) != 2:
        raise ConfigError("Platt scaling needs both supported and unsupported examples")
    features = _logit(np.asarray(probabilities, dtype=np.float64))[:, None]
    model = LogisticRegression(C=1e6, max_iter=1000).fit(features, target)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def choose_threshold(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """The cut (midpoint between neighbouring scores) with the best balanced accuracy on these labels.

    >>> choose_threshold([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1])
    0.5
    """
    scores = np.asarray(probabilities, dtype=np.float64)
    target = np.asarray(labels).astype(bool)
    if target.all() or not target.any():
        raise ConfigError("choosing a threshold needs both positive and negative examples")
    values = np.unique(scores)
    cuts = np.concatenate([[values[0] - _EPSILON], (values[:-1] + values[1:]) / 2, [values[-1] + _EPSILON]])
    best_cut, best = 0.5, -1.0
    for cut in cuts:
        accuracy = balanced_accuracy(scores >= cut, target)
        if accuracy > best + 1e-12:
            best_cut, best = float(cut), accuracy
    return float(min(max(best_cut, 0.0), 1.0))


def balanced_accuracy(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean of the recall of each class (0.5 for a constant prediction)."""
    predicted, target = np.asarray(predicted, dtype=bool), np.asarray(target, dtype=bool)
    recalls = [
        float((predicted[target == side] == side).mean()) for side in (True, False) if (target == side).any()
    ]
    return float(np.mean(recalls))


def expected_calibration_error(confidence: npt.ArrayLike, correct: npt.ArrayLike, bins: int = 15) -> float:
    """ECE with equal-width bins: the mean |accuracy - confidence| per bin, weighted by its size.

    For a multi-class model pass the top-class confidence and whether the argmax was right; for a
    binary verdict, P(supported) and whether the claim is supported.

    >>> round(expected_calibration_error([0.9, 0.9, 0.1], [True, False, False]), 4)
    0.3
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def top_label_calibration_error(probabilities: np.ndarray, labels: npt.ArrayLike, bins: int = 15) -> float:
    """ECE of a multi-class model's top-label confidence (Guo et al., 2017); NaN without rows."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not len(probabilities):
        return float("nan")
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    return expected_calibration_error(probabilities.max(axis=1), correct, bins)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPSILON, 1 - _EPSILON)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
