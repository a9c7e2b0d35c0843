"""The one contract every registered metric passes (scikit-learn's ``parametrize_with_checks``, for metrics).

Each check runs a metric with its default config on ``tiny_records`` (every canonical field present).
"""

from __future__ import annotations

import re
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
TOLERANCE = float_tolerance("float32", style="approx")  # scores are float32 model outputs


def _score(name: str, records: list[dict[str, Any]], *, batch_size: int = 64) -> Results:
    with Scorer([name], batch_size=batch_size, cache=False, device="cpu") as scorer:
        return scorer.score(records)


@pytest.mark.parametrize("name", METRICS)
def test_batch_size_does_not_change_scores(name: str, tiny_records: list[dict[str, Any]]) -> None:
    one, many = _score(name, tiny_records, batch_size=1), _score(name, tiny_records, batch_size=64)
    assert one.score_columns == many.score_columns
    for column in one.score_columns:
        assert one[column].to_list() == pytest.approx(many[column].to_list(), **TOLERANCE, nan_ok=True)


@pytest.mark.parametrize("name", METRICS)
def test_the_callers_order_is_kept(name: str, tiny_records: list[dict[str, Any]]) -> None:
    forward = _score(name, tiny_records)
    backward = _score(name, tiny_records[::-1])
    assert backward["id"].to_list() == forward["id"].to_list()[::-1]
    for column in forward.score_columns:
        assert backward[column].to_list() == pytest.approx(
            forward[column].to_list()[::-1], **TOLERANCE, nan_ok=True
        )


@pytest.mark.parametrize("name", METRICS)
def test_no_records_give_an_empty_result_with_the_score_columns(name: str) -> None:
    results = _score(name, [])
    assert len(results) == 0
    assert results.score_columns == load_metric(name).columns
    for column in results.score_columns:
        assert results.table.schema[column] == pl.Float64


@pytest.mark.parametrize("name", METRICS)
def test_every_declared_column_is_a_float64_score(name: str, tiny_records: list[dict[str, Any]]) -> None:
    metric = load_metric(name)
    results = _score(name, tiny_records)
    assert metric.columns == [f"{name}_{score}" for score in metric.score_names]
    assert results.score_columns == metric.columns
    assert len(results) == len(tiny_records)
    for column in metric.columns:
        assert results.table.schema[column] == pl.Float64
        assert results[column].null_count() == 0
    for column in metric.detail_columns:
        assert results.table[column].null_count() == 0
        assert column not in results.score_columns


@pytest.mark.parametrize("name", METRICS)
def test_config_hash_is_a_stable_hex_string(name: str) -> None:
    first = load_metric(name).config_hash()
    assert re.fullmatch(r"[0-9a-f]+", first)
    assert load_metric(name).config_hash() == first
    assert load_metric(name, **load_metric(name).config).config_hash() == first


@pytest.mark.parametrize("name", METRICS)
def test_declarations(name: str) -> None:
    cls = get_metric_class(name)
    metric = load_metric(name)
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
