"""JudgePredictor on synthetic judges with known structure: it recovers the structure, its
probabilities are calibrated, and conformal sets/intervals hold the nominal coverage on new data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evalsuite.errors import ConfigError, InputError
from proxies import FeatureTable, JudgePredictor, pairwise_table
from proxies.conformal import interval_coverage, set_coverage
from proxies.features import FeatureConfig

Maker = Callable[..., tuple[FeatureTable, np.ndarray]]
TableMaker = Callable[..., FeatureTable]


def test_binary_recovers_the_logistic_judge(make_binary: Maker) -> None:
    train, labels = make_binary(3000, seed=1)
    test, test_labels = make_binary(20000, seed=2, start=10**6)
    proxy = JudgePredictor(kind="binary", cv_folds=3, seed=0)
    report = proxy.fit_table(train, labels)
    predictions = proxy.predict_table(test)
    probability_of_one = predictions.probabilities[:, 1]  # type: ignore[index]
    bayes = 1.0 / (1.0 + np.exp(-(2.0 * test.values[:, 0] - test.values[:, 1])))
    assert roc_auc_score(test_labels, probability_of_one) == pytest.approx(
        roc_auc_score(test_labels, bayes), abs=0.01
    )
    # Calibrated: in each decile of confidence, the proxy is right as often as it says.
    right = np.array(predictions.label) == test_labels
    deciles = np.quantile(predictions.confidence, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(deciles, predictions.confidence, side="right") - 1, 0, 9)
    for b in range(10):
        in_bin = bins == b
        assert right[in_bin].mean() == pytest.approx(predictions.confidence[in_bin].mean(), abs=0.04)
    assert report.model.startswith("linear")  # the truth is linear: boosting should not win
    assert report.labels.used == 3000
    assert report.train + report.calibration == 3000


def test_nonlinear_judge_picks_gradient_boosting(make_table: TableMaker) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 2))
    labels = ((x[:, 0] * x[:, 1] > 0) ^ (rng.random(1500) < 0.05)).astype(int)  # XOR: no linear signal
    proxy = JudgePredictor(kind="binary", cv_folds=3)
    report = proxy.fit_table(make_table(x), labels)
    assert report.model == "gradient_boosting"
    assert report.cv["gradient_boosting"]["roc_auc"] > 0.9
    assert report.cv["linear(C=1)"]["roc_auc"] < 0.6
    assert report.holdout["roc_auc"] > 0.9


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_conformal_sets_hold_their_coverage_on_new_data(make_binary: Maker, coverage: float) -> None:
    train, labels = make_binary(8000, seed=4)
    test, test_labels = make_binary(20000, seed=5, start=10**6)
    proxy = JudgePredictor(
        kind="binary", models=("linear",), cv_folds=3, calibration_share=0.5, coverage=coverage
    )
    proxy.fit_table(train, labels)
    sets = proxy.predict_table(test).sets
    assert sets is not None
    assert set_coverage(sets, test_labels) == pytest.approx(coverage, abs=0.02)


def test_ordinal_labels_sets_and_expected_value(make_table: TableMaker) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12000, 2))
    latent = 1.5 * x[:, 0] + rng.logistic(size=12000) * 0.7
    labels = np.digitize(latent, [-1.5, -0.5, 0.5, 1.5]) + 1  # 1..5
    table = make_table(x)
    proxy = JudgePredictor(kind="ordinal", models=("linear",), cv_folds=3, calibration_share=0.5)
    report = proxy.fit_table(table.subset(np.arange(6000)), labels[:6000])
    assert report.classes == [1, 2, 3, 4, 5]
    predictions = proxy.predict_table(table.subset(np.arange(6000, 12000)))
    assert predictions.sets is not None
    assert predictions.expected is not None
    held = labels[6000:]
    assert set_coverage(predictions.sets, held - 1) == pytest.approx(0.9, abs=0.02)
    # The expected level tracks the judge at least as well as the true latent direction x0 does.
    oracle = np.corrcoef(x[6000:, 0], held)[0, 1]
    assert np.corrcoef(predictions.expected, held)[0, 1] >= oracle - 0.01
    frame = predictions.to_frame()
    assert frame.columns[:3] == ["id", "judge_prediction", "confidence"]
    assert {"proba_1", "proba_5", "judge_set", "judge_expected"} <= set(frame.columns)


def test_continuous_intervals_and_agreement_probability(make_continuous: Maker) -> None:
    train, y = make_continuous(6000, seed=7)
    test, y_test = make_continuous(20000, seed=8, start=10**6)
    proxy = JudgePredictor(kind="continuous", cv_folds=3, calibration_share=0.5, tolerance=0.5)
    report = proxy.fit_table(train, y)
    assert report.holdout["spearman"] > 0.9
    predictions = proxy.predict_table(test)
    assert predictions.intervals is not None
    assert interval_coverage(predictions.intervals, y_test) == pytest.approx(0.9, abs=0.02)
    within = np.abs(np.array(predictions.label) - y_test) <= 0.5
    # The confidence varies with the noise level and matches the realised agreement.
    assert predictions.confidence.std() > 0.1
    assert within.mean() == pytest.approx(predictions.confidence.mean(), abs=0.02)
    high = predictions.confidence > np.median(predictions.confidence)
    assert within[high].mean() > within[~high].mean() + 0.2


def test_pairwise_counts_draws_and_learns_which_output_wins() -> None:
    rng = np.random.default_rng(9)
    n = 2000
    quality_a, quality_b = rng.normal(size=n), rng.normal(size=n)
    ids = tuple(f"q{i}" for i in range(n))
    a = FeatureTable(ids, ("m_quality", "m_noise"), np.c_[quality_a, rng.normal(size=n)])
    b = FeatureTable(ids, ("m_quality", "m_noise"), np.c_[quality_b, rng.normal(size=n)])
    margin = quality_b - quality_a + rng.normal(size=n) * 0.5
    labels = {i: (0 if abs(m) < 0.05 else 2 if m > 0 else 1) for i, m in zip(ids, margin, strict=True)}
    table = pairwise_table(a, b, FeatureConfig(metric_columns=("m_quality", "m_noise"), text_fields=()))
    assert table.names == (
        "a:m_quality",
        "a:m_noise",
        "b:m_quality",
        "b:m_noise",
        "diff:m_quality",
        "diff:m_noise",
    )
    proxy = JudgePredictor(kind="pairwise", models=("linear",), cv_folds=3)
    report = proxy.fit_table(table, labels, draw_label=0)
    draws = sum(value == 0 for value in labels.values())
    assert draws > 0
    assert report.labels.draws == draws
    assert report.labels.used == n - draws
    assert report.classes == [1, 2]
    assert report.holdout["roc_auc"] > 0.9
    with pytest.raises(ConfigError, match="pairs of outputs"):
        JudgePredictor(kind="pairwise").fit_table(a, labels, draw_label=0)


def test_label_problems_name_the_record(make_binary: Maker) -> None:
    table, labels = make_binary(200, seed=10)
    by_id = dict(zip(table.ids, labels.tolist(), strict=True))
    del by_id["r7"]
    proxy = JudgePredictor(kind="binary", models=("linear",), cv_folds=3)
    with pytest.raises(InputError, match=r"1 of 200 records have no label \(e.g. id 'r7'\)"):
        proxy.fit_table(table, by_id)
    report = proxy.fit_table(table, {**by_id, "stranger": 1}, missing_labels="skip")
    assert (report.labels.missing_labels, report.labels.extra_labels, report.labels.used) == (1, 1, 199)
    assert any("1 records have no label" in line for line in report.lines())
    with pytest.raises(InputError, match="binary labels need exactly 2 distinct values, got 3"):
        proxy.fit_table(table, {**by_id, "r7": 5})
    continuous = JudgePredictor(kind="continuous")
    with pytest.raises(InputError, match="id 'r3': continuous labels must be finite numbers, got 'good'"):
        continuous.fit_table(table, {**by_id, "r7": 0.5, "r3": "good"})


def test_too_few_labels_per_class_is_refused(make_binary: Maker) -> None:
    table, labels = make_binary(200, seed=11)
    labels[:] = 0
    labels[:4] = 1
    with pytest.raises(ConfigError, match=r"at least 10 labelled records.*1: 4"):
        JudgePredictor(kind="binary").fit_table(table, labels)


def test_fit_is_seeded(make_binary: Maker) -> None:
    table, labels = make_binary(600, seed=12)
    first = JudgePredictor(kind="binary", cv_folds=3, seed=5)
    second = JudgePredictor(kind="binary", cv_folds=3, seed=5)
    first.fit_table(table, labels)
    second.fit_table(table, labels)
    assert np.array_equal(first.predict_table(table).confidence, second.predict_table(table).confidence)


def test_invalid_parameters_say_what_was_expected(make_table: TableMaker) -> None:
    with pytest.raises(
        ConfigError, match="kind must be one of binary, pairwise, ordinal, continuous, got 'ranking'"
    ):
        JudgePredictor(kind="ranking")
    with pytest.raises(ConfigError, match="coverage must be strictly between 0 and 1"):
        JudgePredictor(kind="binary", coverage=1.0)
    with pytest.raises(ConfigError, match="models must name some of linear, gradient_boosting"):
        JudgePredictor(kind="binary", models=("forest",))
    with pytest.raises(ConfigError, match="tolerance is a positive number for continuous labels"):
        JudgePredictor(kind="binary", tolerance=0.5)
    with pytest.raises(ConfigError, match="not fitted yet"):
        JudgePredictor(kind="binary").predict_table(make_table(np.zeros((2, 3))))
