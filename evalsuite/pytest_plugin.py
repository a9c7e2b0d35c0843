"""pytest plugin (entry point ``pytest11``): a session-scoped Scorer for evaluation tests in CI.

Use it in a test suite::

    def test_answers_stay_good(evalsuite_scorer):
        res = evalsuite_scorer.score("tests/data/answers.jsonl")
        res.assert_thresholds({"bertscore_f1": 0.85})

Metrics come from ``--evalsuite-metrics`` or the ini option ``evalsuite_metrics`` (default
``bertscore``); the device from ``--evalsuite-device``. Models load once per test session.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from evalsuite.api import Scorer


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("evalsuite")
    group.addoption(
        "--evalsuite-metrics", default=None, help="comma-separated metrics of the evalsuite_scorer fixture"
    )
    group.addoption("--evalsuite-device", default="auto", help="device of the evalsuite_scorer fixture")
    group.addoption("--evalsuite-no-cache", action="store_true", help="do not reuse cached scores")
    parser.addini(
        "evalsuite_metrics", "metrics of the evalsuite_scorer fixture", type="args", default=["bertscore"]
    )


@pytest.fixture(scope="session")
def evalsuite_scorer(pytestconfig: pytest.Config) -> Iterator[Scorer]:
    """One :class:`evalsuite.Scorer` for the whole test session (models loaded once)."""
    from evalsuite.api import Scorer

    option = pytestconfig.getoption("evalsuite_metrics")
    metrics = option.split(",") if option else list(pytestconfig.getini("evalsuite_metrics"))
    scorer = Scorer(
        [name.strip() for name in metrics if name.strip()],
        device=pytestconfig.getoption("evalsuite_device"),
        cache=not pytestconfig.getoption("evalsuite_no_cache"),
    )
    yield scorer
    scorer.close()
