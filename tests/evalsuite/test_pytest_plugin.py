"""The pytest plugin: a session-scoped scorer for evaluation tests in a user's CI."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.model

pytest_plugins = ["pytester"]

USER_TEST = """
import pytest
from evalsuite import ThresholdError

def test_quality_gate(evalsuite_scorer, records_file):
    res = evalsuite_scorer.score(records_file)
    res.assert_thresholds({"bertscore_f1": 0.5})

def test_same_scorer_object_across_tests(evalsuite_scorer, records_file):
    first = id(evalsuite_scorer)
    evalsuite_scorer.score(records_file)
    assert first == id(evalsuite_scorer)

def test_a_missed_threshold_fails_the_test(evalsuite_scorer, records_file):
    with pytest.raises(ThresholdError, match="bertscore_f1"):
        evalsuite_scorer.score(records_file).assert_thresholds({"bertscore_f1": 0.9999})
"""


def test_scorer_fixture_scores_and_gates(pytester: pytest.Pytester) -> None:
    records = [
        {"prediction": "Paris is the capital of France.", "references": ["The capital of France is Paris."]},
        {"prediction": "Water boils at 100 degrees.", "references": ["At sea level water boils at 100 °C."]},
    ]
    data = pytester.makefile(".jsonl", answers="\n".join(json.dumps(r) for r in records))
    pytester.makeconftest(
        f"""
import pytest

@pytest.fixture
def records_file():
    return {str(data)!r}
"""
    )
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess(
        "--evalsuite-metrics", "bertscore", "--evalsuite-device", "cpu", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3)


def test_metrics_come_from_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nevalsuite_metrics = embedding_similarity\n")
    pytester.makepyfile(
        test_ini="""
def test_ini_metrics(evalsuite_scorer):
    assert [m.name for m in evalsuite_scorer.metrics] == ["embedding_similarity"]
"""
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
