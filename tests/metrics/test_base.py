"""Tests of evalsuite.registry (re-exported by metrics.base): the lazy registry, plugins, config errors and config hashes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

import evalsuite.registry
from evalsuite.api import Scorer
from evalsuite.errors import ConfigError, UnknownMetricError
from metrics.base import Metric, Scores, get_metric_class, list_metrics, load_metric, register_metric

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime


class LengthRatio(Metric):
    """Characters of the prediction over characters of its shortest reference (a model-free toy)."""

    name = "length_ratio"
    fields = ("prediction", "references")
    score_names = ("ratio",)
    description = "Length of the prediction relative to the shortest reference."

    def __init__(self, *, scale: float = 1.0) -> None:
        super().__init__(scale=scale)
        self.scale = scale

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        return {
            "ratio": [
                self.scale * len(record["prediction"]) / min(len(ref) for ref in record["references"])
                for record in records
            ]
        }


class PluginMetric(LengthRatio):
    """What a third-party package would expose through the ``evalsuite.metrics`` entry points."""

    name = "myplug"
    description = "A metric from a plugin package."


class NotAMetric:
    """An entry point that points at something else."""


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registrations made by a test must not leak into the contract suite or other tests.
    monkeypatch.setattr(evalsuite.registry, "_registered", dict(evalsuite.registry._registered))


def test_builtin_metrics_are_listed() -> None:
    names = list_metrics()
    assert {"bertscore", "embedding_similarity"} <= set(names)
    assert names == sorted(names)


@pytest.mark.slow
def test_listing_metrics_does_not_import_torch() -> None:
    code = (
        "import evalsuite, sys; evalsuite.list_metrics(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr


def test_an_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownMetricError, match=r"Did you mean 'bertscore'") as info:
        get_metric_class("bertscor")
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, KeyError)
    assert "Available: " in str(info.value)
    assert "embedding_similarity" in str(info.value)


def test_an_unknown_name_without_close_matches_lists_the_available_ones() -> None:
    with pytest.raises(UnknownMetricError, match="unknown metric 'zzzz'") as info:
        load_metric("zzzz")
    assert "Did you mean" not in str(info.value)
    assert "bertscore" in str(info.value)


@pytest.mark.parametrize("name", ["bertscore", "embedding_similarity"])
def test_a_bad_keyword_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid config for metric '{name}'.*no_such_option"):
        load_metric(name, no_such_option=1)


def test_positional_config_is_refused() -> None:
    cls = get_metric_class("bertscore")
    with pytest.raises(TypeError):
        cls("minilm")  # type: ignore[misc]


def test_load_metric_passes_config() -> None:
    metric = load_metric("bertscore", idf=True, num_layers=3)
    assert metric.config["idf"] is True
    assert metric.config["num_layers"] == 3
    assert metric.columns == ["bertscore_precision", "bertscore_recall", "bertscore_f1"]


def test_a_registered_metric_is_listed_and_usable_through_the_scorer() -> None:
    assert "length_ratio" not in list_metrics()
    register_metric("length_ratio")(LengthRatio)
    assert "length_ratio" in list_metrics()
    assert get_metric_class("length_ratio") is LengthRatio
    records = [
        {"id": "a", "prediction": "abcd", "references": ["ab", "abcdefgh"]},
        {"id": "b", "prediction": "xy", "references": ["wxyz"]},
    ]
    with Scorer({"length_ratio": {"scale": 2.0}}, device="cpu", cache=False) as scorer:
        results = scorer.score(records)
    assert results.score_columns == ["length_ratio_ratio"]
    assert results["length_ratio_ratio"].to_list() == [4.0, 1.0]
    assert results["id"].to_list() == ["a", "b"]


def test_registering_under_another_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="registered as 'other_name'"):
        register_metric("other_name")(LengthRatio)


def test_entry_point_plugins_are_listed_and_loadable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        evalsuite.registry, "_entry_point_targets", lambda: {"myplug": f"{__name__}:PluginMetric"}
    )
    assert "myplug" in list_metrics()
    metric = load_metric("myplug", scale=3.0)
    assert type(metric) is PluginMetric
    assert metric.config == {"scale": 3.0}
    assert metric.columns == ["myplug_ratio"]


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        evalsuite.registry, "_entry_point_targets", lambda: {"bertscore": f"{__name__}:PluginMetric"}
    )
    assert get_metric_class("bertscore").__module__ == "metrics.bertscore"


def test_an_entry_point_to_a_non_metric_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        evalsuite.registry, "_entry_point_targets", lambda: {"broken": f"{__name__}:NotAMetric"}
    )
    with pytest.raises(ConfigError, match="not a Metric subclass"):
        load_metric("broken")


def test_config_hash_is_stable_across_instances() -> None:
    first = load_metric("bertscore").config_hash()
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert load_metric("bertscore").config_hash() == first
    assert load_metric("bertscore", idf=False, model="minilm").config_hash() == first
    assert LengthRatio(scale=2.0).config_hash() == LengthRatio(scale=2.0).config_hash()


@pytest.mark.slow
def test_config_hash_is_stable_across_processes() -> None:
    code = "from metrics.base import load_metric; print(load_metric('bertscore', num_layers=3).config_hash())"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == load_metric("bertscore", num_layers=3).config_hash()


@pytest.mark.parametrize(
    "config",
    [{"idf": True}, {"num_layers": 3}, {"model": "mpnet"}, {"lang": "de"}],
    ids=lambda c: next(iter(c)),
)
def test_config_hash_changes_with_config(config: dict[str, Any]) -> None:
    assert load_metric("bertscore", **config).config_hash() != load_metric("bertscore").config_hash()


def test_config_hash_differs_between_metrics_with_equal_config() -> None:
    assert LengthRatio().config_hash() != PluginMetric().config_hash()
    assert LengthRatio(scale=1.0).config_hash() != LengthRatio(scale=2.0).config_hash()


def test_repr_shows_the_config() -> None:
    assert repr(LengthRatio(scale=2.0)) == "LengthRatio(scale=2.0)"
