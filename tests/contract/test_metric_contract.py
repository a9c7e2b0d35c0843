"""The one contract every registered metric passes (scikit-learn's ``parametrize_with_checks``, for metrics).

Each check runs a metric on ``tiny_records`` (every canonical field present): every registered metric
with its default config, and the configurations listed in ``CONFIGURATIONS`` that take another path
through a metric's code (factuality's checkers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from evalsuite.api import Scorer
from evalsuite.records import CANONICAL_FIELDS
from evalsuite.results import Results
from evalsuite.testing import float_tolerance
from metrics.base import get_metric_class, list_metrics, load_metric

pytestmark = pytest.mark.model

METRICS = list_metrics()
Case = tuple[str, dict[str, Any]]  # a metric's name and its config
TOLERANCE = float_tolerance("float32", style="approx")  # scores are float32 model outputs
# Non-default configurations, by test id; ``AGGREGATOR`` stands for an aggregator file fitted on the
# default NLI model (written once per session).
AGGREGATOR = "<aggregator>"
CONFIGURATIONS: dict[str, Case] = {
    "factuality-summac-zs-summac-window": ("factuality", {"scoring": "summac", "granularity": "window"}),
    "factuality-summac-conv": ("factuality", {"checker": "summac-conv", "aggregator": AGGREGATOR}),
    "factuality-minicheck": ("factuality", {"checker": "minicheck"}),
    # Small chunks of whole claims: several overlapping chunks per source even on tiny records.
    "factuality-minicheck-whole": (
        "factuality",
        {"checker": "minicheck", "claims": "whole", "chunk_words": 8},
    ),
    # The local judge's other kinds: P(yes) of a groundedness question, both orders of a pair.
    "llm_judge-binary": ("llm_judge", {"kind": "binary"}),
    "toxicity-profanity-check": ("toxicity", {"model": "profanity-check"}),  # the default is safety-minilm
}
CASES = [pytest.param((name, {}), id=name) for name in METRICS] + [
    pytest.param(case, id=case_id) for case_id, case in CONFIGURATIONS.items()
]


@pytest.fixture(scope="session")
def aggregator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from metrics.factuality import DEFAULT_MODEL
    from metrics.factuality_conv import Aggregator

    bins = 10
    weights = tuple(float(i - bins) / bins for i in range(2 * bins))  # any fixed layer will do
    aggregator = Aggregator(weights, -0.5, bins, DEFAULT_MODEL, "sentence", "en")
    return aggregator.write(tmp_path_factory.mktemp("factuality") / "aggregator.json")


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, aggregator_file: Path) -> Case:
    """``(metric name, config)``, with placeholders replaced by real files."""
    name, config = request.param
    return name, {
        key: str(aggregator_file) if value == AGGREGATOR else value for key, value in config.items()
    }


def _score(case: Case, records: list[dict[str, Any]], *, batch_size: int = 64) -> Results:
    name, config = case
    with Scorer({name: config}, batch_size=batch_size, cache=False, device="cpu") as scorer:
        return scorer.score(records)


def test_batch_size_does_not_change_scores(case: Case, tiny_records: list[dict[str, Any]]) -> None:
    one, many = _score(case, tiny_records, batch_size=1), _score(case, tiny_records, batch_size=64)
    assert one.score_columns == many.score_columns
    for column in one.score_columns:
        assert one[column].to_list() == pytest.approx(many[column].to_list(), **TOLERANCE, nan_ok=True)


def test_the_callers_order_is_kept(case: Case, tiny_records: list[dict[str, Any]]) -> None:
    forward = _score(case, tiny_records)
    backward = _score(case, tiny_records[::-1])
    assert backward["id"].to_list() == forward["id"].to_list()[::-1]
    for column in forward.score_columns:
        assert backward[column].to_list() == pytest.approx(
            forward[column].to_list()[::-1], **TOLERANCE, nan_ok=True
        )


def test_no_records_give_an_empty_result_with_the_score_columns(case: Case) -> None:
    results = _score(case, [])
    assert len(results) == 0
    assert results.score_columns == load_metric(case[0], **case[1]).columns
    for column in results.score_columns:
        assert results.table.schema[column] == pl.Float64


def test_every_declared_column_is_a_float64_score(case: Case, tiny_records: list[dict[str, Any]]) -> None:
    name, config = case
    metric = load_metric(name, **config)
    results = _score(case, tiny_records)
    assert metric.columns == [f"{name}_{score}" for score in metric.score_names]
    assert results.score_columns == metric.columns
    assert len(results) == len(tiny_records)
    for column in metric.columns:
        assert results.table.schema[column] == pl.Float64
        assert results[column].null_count() == 0
    for column in metric.detail_columns:
        assert results.table[column].null_count() == 0
        assert column not in results.score_columns


def test_config_hash_is_a_stable_hex_string(case: Case) -> None:
    name, config = case
    first = load_metric(name, **config).config_hash()
    assert re.fullmatch(r"[0-9a-f]+", first)
    assert load_metric(name, **config).config_hash() == first
    assert load_metric(name, **load_metric(name, **config).config).config_hash() == first


def test_declarations(case: Case) -> None:
    name, config = case
    cls = get_metric_class(name)
    metric = load_metric(name, **config)
    assert cls.name == name == metric.name
    assert isinstance(metric.higher_is_better, bool)
    assert metric.fields
    assert set(metric.fields) <= set(CANONICAL_FIELDS)
    assert set(metric.optional_fields) <= set(CANONICAL_FIELDS) - set(metric.fields)
    assert len(set(metric.detail_names)) == len(metric.detail_names)
    assert not set(metric.detail_names) & set(metric.score_names)
    assert metric.score_names
    assert len(set(metric.score_names)) == len(metric.score_names)
    assert isinstance(metric.description, str)
    assert metric.description.strip()
    assert cls.__doc__
    assert isinstance(metric.version, int)
