"""Factuality's ``checker`` option: summac-zs unchanged, summac-conv by hand, and the options of each."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalsuite.errors import ConfigError
from metrics.base import load_metric
from metrics.factuality import CHECKER_OPTIONS, DEFAULT_CHECKER, DEFAULT_MODEL, Factuality, fit_summac_conv
from metrics.factuality_conv import Aggregator, claim_histograms, fit_aggregator, sigmoid
from metrics.factuality_summac import claim_scores

SOURCE = "The plant opened in 1998. It employs 300 people. It closed in 2020."
CHUNKS = ["The plant opened in 1998.", "It employs 300 people.", "It closed in 2020."]
PREDICTION = "The plant opened in 1998. It still runs today."
CLAIMS = ["The plant opened in 1998.", "It still runs today."]
# [chunk][claim] entailment and contradiction probabilities.
ENTAILMENT = [[0.9, 0.1], [0.2, 0.3], [0.1, 0.05]]
CONTRADICTION = [[0.05, 0.2], [0.6, 0.1], [0.1, 0.9]]
RECORD = {"prediction": PREDICTION, "source": SOURCE}


def table() -> dict[tuple[str, str], tuple[float, float, float]]:
    return {
        (chunk, claim): (ENTAILMENT[i][j], 1 - ENTAILMENT[i][j] - CONTRADICTION[i][j], CONTRADICTION[i][j])
        for i, chunk in enumerate(CHUNKS)
        for j, claim in enumerate(CLAIMS)
    }


def aggregator(**overrides: Any) -> Aggregator:
    options: dict[str, Any] = {
        "weights": (1.0, 2.0, 3.0, -4.0),
        "intercept": -1.0,
        "bins": 2,
        "nli_model": DEFAULT_MODEL,
        "granularity": "sentence",
        "language": "en",
    }
    return Aggregator(**{**options, **overrides})


def test_the_defaults_live_in_one_place_each() -> None:
    metric = Factuality()
    assert (metric.checker, metric.model) == (DEFAULT_CHECKER, DEFAULT_MODEL) == ("summac-zs", "nli-minilm")
    assert metric.config == {
        "checker": "summac-zs",
        "model": "nli-minilm",
        "label_map": None,
        "language": "en",
        "granularity": "sentence",
        "scoring": "best_chunk",
    }


# -- summac-zs: today's behaviour -------------------------------------------------------------------------
@pytest.mark.parametrize("scoring", ["best_chunk", "summac"])
@pytest.mark.parametrize("granularity", ["sentence", "window"])
def test_summac_zs_is_the_formula_exactly(fake_nli: Any, scoring: Any, granularity: Any) -> None:
    default = Factuality(scoring=scoring, granularity=granularity).score_batch([RECORD], fake_nli(table()))
    explicit = Factuality(checker="summac-zs", scoring=scoring, granularity=granularity)
    assert explicit.score_batch([RECORD], fake_nli(table())) == default
    if granularity == "sentence":
        # Bit for bit what SummaC-ZS's formula gives on the runtime's float32 probabilities.
        entailment, contradiction = (
            np.asarray(matrix, dtype=np.float32).tolist() for matrix in (ENTAILMENT, CONTRADICTION)
        )
        values = [value for value, _, _ in claim_scores(entailment, contradiction, scoring=scoring)]
        assert default["mean"] == [sum(values) / len(values)]
        assert default["min"] == [min(values)]


# -- summac-conv ------------------------------------------------------------------------------------------
def test_claim_histograms_by_hand() -> None:
    # Chunk values per claim: entailment [0.9, 0.2, 0.1] and [0.1, 0.3, 0.05]; two bins split at 0.5.
    histograms = claim_histograms(ENTAILMENT, CONTRADICTION, bins=2)
    np.testing.assert_allclose(histograms, [[2 / 3, 1 / 3, 2 / 3, 1 / 3], [1.0, 0.0, 2 / 3, 1 / 3]])
    # 1.0 falls in the last bin, 0.5 in the upper one; each histogram sums to 1.
    edges = claim_histograms([[0.0], [0.5], [1.0], [0.25]], [[0.0]] * 4, bins=4)
    assert edges.tolist() == [[0.25, 0.25, 0.25, 0.25, 1.0, 0.0, 0.0, 0.0]]


def test_summac_conv_scores_by_hand(fake_nli: Any, tmp_path: Path) -> None:
    path = aggregator().write(tmp_path / "aggregator.json")
    metric = Factuality(checker="summac-conv", aggregator=path)
    scores = metric.score_batch([RECORD], fake_nli(table()))
    # Claim histograms (see above) · weights (1, 2, 3, -4) - 1.
    logits = [2 / 3 + 2 / 3 + 2 - 4 / 3 - 1, 1.0 + 0.0 + 2 - 4 / 3 - 1]
    probabilities = [1 / (1 + math.exp(-logit)) for logit in logits]
    assert scores["mean"] == [pytest.approx(1 / (1 + math.exp(-sum(logits) / 2)))]
    assert scores["min"] == [pytest.approx(min(probabilities))]
    claims = scores["claims"][0]
    assert [claim["score"] for claim in claims] == pytest.approx(probabilities)
    # The evidence is the most entailing and the most contradicting chunk.
    assert [(claim["support"], claim["contradicting"]) for claim in claims] == [
        (CHUNKS[0], CHUNKS[1]),
        (CHUNKS[1], CHUNKS[2]),
    ]
    assert metric.columns == ["factuality_mean", "factuality_min"]
    assert metric.config["aggregator"] == str(path)


def test_sigmoid_saturates_without_warnings() -> None:
    assert sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]


def test_aggregator_round_trip_and_digest(tmp_path: Path) -> None:
    original = aggregator()
    path = original.write(tmp_path / "nested" / "aggregator.json")
    assert Aggregator.read(path) == original
    assert json.loads(path.read_text())["weights"] == [1.0, 2.0, 3.0, -4.0]
    # The digest follows what changes scores, not what the layer was fitted on.
    assert aggregator(weights=(1.0, 2.0, 3.0, -4.5)).digest() != original.digest()
    refit = fit_aggregator(
        [np.eye(4)[[0]], np.eye(4)[[1]]], [1, 0], bins=2, nli_model="m", granularity="sentence", language="en"
    )
    assert Aggregator.read(refit.write(tmp_path / "refit.json")) == refit
    assert refit.digest() != original.digest()


def test_state_hash_is_the_aggregators_digest(tmp_path: Path) -> None:
    path = aggregator().write(tmp_path / "aggregator.json")
    first = Factuality(checker="summac-conv", aggregator=path)
    assert first.state_hash() == aggregator().digest()
    aggregator(intercept=0.5).write(path)  # refitted in place: same config, new state
    second = Factuality(checker="summac-conv", aggregator=path)
    assert second.config_hash() == first.config_hash()
    assert second.state_hash() != first.state_hash()
    assert Factuality().state_hash() == ""


def test_without_an_aggregator_the_error_says_how_to_fit_one() -> None:
    with pytest.raises(ConfigError, match=r"needs aggregator=.*evalsuite factuality-fit FILE --out"):
        load_metric("factuality", checker="summac-conv")
    with pytest.raises(ConfigError, match=r"does not exist.*evalsuite factuality-fit"):
        load_metric("factuality", checker="summac-conv", aggregator="no/such/aggregator.json")


@pytest.mark.parametrize(
    ("fitted", "options", "message"),
    [
        (
            {"nli_model": "other-nli"},
            {},
            "fitted with model='other-nli', but this metric has model='nli-minilm'",
        ),
        ({}, {"model": "other-nli"}, "fitted with model='nli-minilm', but this metric has model='other-nli'"),
        ({"granularity": "window"}, {}, "fitted with granularity='window'.*pass granularity='window'"),
        ({"language": "de"}, {}, "fitted with language='de'"),
    ],
)
def test_an_aggregator_fitted_otherwise_is_refused(
    tmp_path: Path, fitted: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    path = aggregator(**fitted).write(tmp_path / "aggregator.json")
    with pytest.raises(ConfigError, match=message):
        load_metric("factuality", checker="summac-conv", aggregator=str(path), **options)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ('{"weights": [1]}', "is not a factuality aggregator"),
        (json.dumps({**aggregator().to_dict(), "format": 99}), "has format 99"),
        (json.dumps({**aggregator().to_dict(), "weights": [1.0]}), "needs 4 weights, got 1"),
        (json.dumps({k: v for k, v in aggregator().to_dict().items() if k != "bins"}), "is damaged"),
    ],
)
def test_a_foreign_aggregator_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "aggregator.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        Aggregator.read(path)


def test_fit_aggregator_learns_which_histograms_mean_consistent() -> None:
    rng = np.random.default_rng(0)
    bins = 4

    def record(consistent: bool) -> np.ndarray:
        # Consistent records have claims entailed by some chunk (mass in the top entailment bin).
        entailment = rng.uniform(0.7 if consistent else 0.0, 1.0 if consistent else 0.4, size=(5, 3))
        return claim_histograms(entailment.tolist(), np.zeros((5, 3)).tolist(), bins)

    labels = [1, 0] * 20
    histograms = [record(bool(label)) for label in labels]
    fitted = fit_aggregator(
        histograms,
        labels,
        bins=bins,
        nli_model="m",
        granularity="sentence",
        language="en",
        file="f",
        sha256="s",
    )
    logits = [fitted.claim_logits(h.mean(axis=0, keepdims=True))[0] for h in histograms]
    assert all((logit > 0) == bool(label) for logit, label in zip(logits, labels, strict=True))
    assert fitted.fitted_on is not None
    assert (fitted.fitted_on.records, fitted.fitted_on.consistent, fitted.fitted_on.claims) == (40, 20, 120)
    with pytest.raises(ConfigError, match="both consistent"):
        fit_aggregator(histograms[:1], [1], bins=bins, nli_model="m", granularity="sentence", language="en")


def test_fit_summac_conv_uses_the_metrics_own_matrices(fake_nli: Any, tmp_path: Path) -> None:
    supported = {"prediction": "The plant opened in 1998.", "source": SOURCE}
    unsupported = {"prediction": "It still runs today.", "source": SOURCE}
    records = [supported, unsupported] * 3
    fitted = fit_summac_conv(records, [1, 0] * 3, fake_nli(table()), bins=2)
    path = fitted.write(tmp_path / "aggregator.json")
    scores = Factuality(checker="summac-conv", aggregator=path).score_batch(records[:2], fake_nli(table()))
    assert scores["mean"][0] > 0.5 > scores["mean"][1]
    assert fitted.fitted_on is not None
    assert (fitted.fitted_on.records, fitted.fitted_on.claims) == (6, 6)


# -- options ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"checker": "vote"}, "checker must be one of 'summac-zs', 'summac-conv' or 'minicheck', got 'vote'"),
        ({"granularity": "page"}, "granularity must be 'sentence' or 'window', got 'page'"),
        ({"scoring": "vote"}, "scoring must be 'summac' or 'best_chunk', got 'vote'"),
        ({"chunk_words": 100}, "option 'chunk_words' applies to checker 'minicheck', not to 'summac-zs'"),
        (
            {"aggregator": "a.json"},
            "option 'aggregator' applies to checker 'summac-conv', not to 'summac-zs'",
        ),
        ({"checker": "summac-conv", "scoring": "summac"}, "option 'scoring' applies to checker 'summac-zs'"),
        ({"checker": "minicheck", "granularity": "window"}, "option 'granularity' applies to checker"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Factuality(**options)


def test_every_checker_is_listed_with_its_options() -> None:
    assert set(CHECKER_OPTIONS) == {"summac-zs", "summac-conv", "minicheck"}
