"""Calibration: each fit against an independent computation (grid search, sklearn, brute force)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from evalsuite.calibration import (
    Calibration,
    balanced_accuracy,
    choose_threshold,
    expected_calibration_error,
    fit_platt,
    fit_temperature,
    softmax,
    top_label_calibration_error,
)
from evalsuite.errors import ConfigError

RNG = np.random.default_rng(7)
LABELS = RNG.integers(0, 3, size=400)
LOGITS = 3.0 * (RNG.normal(size=(400, 3)) + 1.2 * np.eye(3)[LABELS])


def nll(temperature: float) -> float:
    p = softmax(LOGITS, temperature)
    return float(-np.log(p[np.arange(len(LABELS)), LABELS]).mean())


def test_fit_temperature_finds_the_likelihood_minimum_of_a_fine_grid() -> None:
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    best = grid[np.argmin([nll(t) for t in grid])]
    fitted = fit_temperature(LOGITS, LABELS)
    assert fitted == pytest.approx(best, rel=2e-3)
    assert nll(fitted) <= nll(best) + 1e-9


def test_temperature_never_moves_the_argmax_and_lowers_the_error_of_an_overconfident_model() -> None:
    fitted = fit_temperature(LOGITS, LABELS)
    assert np.array_equal(softmax(LOGITS, fitted).argmax(1), LOGITS.argmax(1))
    assert top_label_calibration_error(softmax(LOGITS, fitted), LABELS) < top_label_calibration_error(
        softmax(LOGITS), LABELS
    )


def test_fit_platt_matches_a_logistic_regression_on_the_log_odds() -> None:
    from sklearn.linear_model import LogisticRegression

    scores = RNG.uniform(0.02, 0.98, size=300)
    labels = (RNG.uniform(size=300) < scores**2).astype(int)
    slope, intercept = fit_platt(scores, labels)
    log_odds = np.log(scores / (1 - scores))[:, None]
    reference = LogisticRegression(C=1e6, max_iter=1000).fit(log_odds, labels)
    assert slope == pytest.approx(float(reference.coef_[0, 0]), rel=1e-4)
    assert intercept == pytest.approx(float(reference.intercept_[0]), rel=1e-4, abs=1e-6)
    calibration = Calibration(slope=slope, intercept=intercept)
    assert np.allclose(calibration.supported(scores), reference.predict_proba(log_odds)[:, 1], atol=1e-6)


def test_choose_threshold_is_the_best_balanced_accuracy_by_brute_force() -> None:
    scores = np.round(RNG.uniform(size=120), 2)  # ties, as real scores have
    labels = (scores + RNG.normal(scale=0.3, size=120) > 0.5).astype(int)
    cut = choose_threshold(scores, labels)
    best = max(balanced_accuracy_score(labels, scores >= c) for c in np.unique(np.r_[scores, 1.01]))
    assert balanced_accuracy_score(labels, scores >= cut) == pytest.approx(best, abs=1e-12)
    assert balanced_accuracy(scores >= cut, labels) == pytest.approx(best, abs=1e-12)
    assert choose_threshold([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]) == pytest.approx(0.5)


def test_expected_calibration_error_by_hand() -> None:
    # bins of 0.5: [0.2, 0.4] right 1 of 2 (|0.5 - 0.3| = 0.2); [0.8] wrong (|0 - 0.8|)
    assert expected_calibration_error([0.2, 0.4, 0.8], [True, False, False], bins=2) == pytest.approx(
        2 / 3 * 0.2 + 1 / 3 * 0.8
    )
    assert expected_calibration_error([0.25, 0.25, 0.25, 0.25], [True, False, False, False]) == pytest.approx(
        0.0
    )
    assert np.isnan(top_label_calibration_error(np.empty((0, 3)), []))


def test_calibration_round_trips_through_its_file_and_rejects_nonsense(tmp_path: Path) -> None:
    calibration = Calibration(temperature=1.5, slope=0.9, intercept=-0.1, threshold=0.4, fitted_on="holdout")
    calibration.write(tmp_path)
    assert Calibration.read(tmp_path) == calibration
    assert Calibration.read(tmp_path / "absent") is None
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": -1}))
    with pytest.raises(ConfigError, match="temperature"):
        Calibration.read(tmp_path)
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a calibration file"):
        Calibration.read(tmp_path)
    with pytest.raises(ConfigError, match="both"):
        choose_threshold([0.2, 0.3], [1, 1])
