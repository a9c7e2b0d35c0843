"""Cascades: the plan's arithmetic, and its reported agreement against the realised one on new data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from evalsuite.errors import ConfigError
from proxies import FeatureTable, JudgePredictor, agreement_curve, plan_cascade, realised_agreement

Maker = Callable[..., tuple[FeatureTable, np.ndarray]]


def test_budget_sends_the_least_confident_records() -> None:
    plan = plan_cascade(["a", "b", "c", "d", "e"], [0.9, 0.55, 0.99, 0.7, 0.6], budget=0.4)
    assert plan.judge_calls == 2
    assert plan.judge_calls_saved == 3
    assert plan.escalated_ids == ["b", "e"]
    assert plan.needs_judge.tolist() == [False, True, False, False, True]
    assert plan.escalation_rank.tolist() == [0, 1, 0, 0, 2]
    assert plan.expected_agreement == pytest.approx((2 + 0.9 + 0.99 + 0.7) / 5)
    frame = plan.to_frame()
    assert frame.columns == ["id", "needs_judge", "escalation_rank", "confidence"]
    assert frame["needs_judge"].sum() == 2


def test_target_agreement_takes_the_fewest_calls() -> None:
    confidence = [0.9, 0.55, 0.99, 0.7, 0.6]
    curve = agreement_curve(confidence)["expected_agreement"].to_list()
    assert curve == pytest.approx([0.748, 0.838, 0.918, 0.978, 0.998, 1.0])
    assert plan_cascade(list("abcde"), confidence, target_agreement=0.9).judge_calls == 2
    assert plan_cascade(list("abcde"), confidence, target_agreement=0.7).judge_calls == 0
    assert plan_cascade(list("abcde"), confidence, target_agreement=1.0).judge_calls == 5


def test_the_curve_is_monotone_and_spans_every_budget() -> None:
    confidence = np.random.default_rng(0).uniform(0.5, 1.0, size=101)
    curve = agreement_curve(confidence)
    assert curve.height == 102
    assert curve["judge_calls"].to_list() == list(range(102))
    assert np.all(np.diff(curve["expected_agreement"].to_numpy()) >= 0)
    assert curve["expected_agreement"][0] == pytest.approx(confidence.mean())
    assert curve["expected_agreement"][-1] == pytest.approx(1.0)


def test_invalid_plans_say_what_was_expected() -> None:
    with pytest.raises(ConfigError, match="exactly one of budget"):
        plan_cascade(["a"], [0.5])
    with pytest.raises(ConfigError, match="exactly one of budget"):
        plan_cascade(["a"], [0.5], budget=0.1, target_agreement=0.9)
    with pytest.raises(ConfigError, match="budget must be a share of the records between 0 and 1, got 30"):
        plan_cascade(["a"], [0.5], budget=30)
    with pytest.raises(ConfigError, match="probabilities in"):
        plan_cascade(["a"], [1.5], budget=0.5)


@pytest.mark.parametrize("budget", [0.1, 0.3, 0.5])
def test_reported_agreement_matches_the_realised_one_on_held_out_data(
    make_binary: Maker, budget: float
) -> None:
    train, labels = make_binary(4000, seed=21)
    test, judge = make_binary(20000, seed=22, start=10**6)
    proxy = JudgePredictor(kind="binary", models=("linear",), cv_folds=3)
    proxy.fit_table(train, labels)
    predictions = proxy.predict_table(test)
    plan = proxy.cascade_predictions(predictions, budget=budget)
    realised = realised_agreement(plan.needs_judge, predictions.label, judge.tolist())
    assert plan.share_to_judge == pytest.approx(budget)
    assert realised == pytest.approx(plan.expected_agreement, abs=0.01)
    proxy_alone = realised_agreement(np.zeros(len(judge), dtype=bool), predictions.label, judge.tolist())
    # Escalating the least confident records beats escalating records at random.
    assert realised > proxy_alone + budget * (1 - proxy_alone) + 0.01


def test_target_agreement_is_met_on_held_out_data(make_binary: Maker) -> None:
    train, labels = make_binary(4000, seed=23)
    test, judge = make_binary(20000, seed=24, start=10**6)
    proxy = JudgePredictor(kind="binary", models=("linear",), cv_folds=3)
    proxy.fit_table(train, labels)
    predictions = proxy.predict_table(test)
    plan = proxy.cascade_predictions(predictions, target_agreement=0.95)
    assert plan.expected_agreement >= 0.95
    assert realised_agreement(plan.needs_judge, predictions.label, judge.tolist()) >= 0.94
    assert 0 < plan.judge_calls < len(judge)


def test_continuous_cascade_needs_a_tolerance(make_continuous: Maker) -> None:
    train, y = make_continuous(800, seed=25)
    proxy = JudgePredictor(kind="continuous", models=("linear",), cv_folds=3)
    proxy.fit_table(train, y)
    with pytest.raises(ConfigError, match="needs a tolerance"):
        proxy.cascade_predictions(proxy.predict_table(train), budget=0.3)
