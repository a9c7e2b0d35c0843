"""Factuality (SummaC-ZS style): claim scores, aggregation and evidence by hand, windows, and for real."""

from __future__ import annotations

from typing import Any

import pytest

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError
from metrics.factuality import Factuality, claim_scores

SOURCE = "The plant opened in 1998. It employs 300 people. It closed in 2020."
CHUNKS = ["The plant opened in 1998.", "It employs 300 people.", "It closed in 2020."]
PREDICTION = "The plant opened in 1998. It still runs today."
CLAIMS = ["The plant opened in 1998.", "It still runs today."]
# [chunk][claim] entailment and contradiction probabilities.
ENTAILMENT = [[0.9, 0.1], [0.2, 0.3], [0.1, 0.05]]
CONTRADICTION = [[0.05, 0.2], [0.6, 0.1], [0.1, 0.9]]


def table() -> dict[tuple[str, str], tuple[float, float, float]]:
    return {
        (chunk, claim): (ENTAILMENT[i][j], 1 - ENTAILMENT[i][j] - CONTRADICTION[i][j], CONTRADICTION[i][j])
        for i, chunk in enumerate(CHUNKS)
        for j, claim in enumerate(CLAIMS)
    }


def test_claim_scores_by_hand() -> None:
    # best_chunk: per claim, the chunk with the highest entailment - contradiction.
    assert claim_scores(ENTAILMENT, CONTRADICTION) == [
        (pytest.approx(0.9 - 0.05), 0, 1),
        (pytest.approx(0.3 - 0.1), 1, 2),
    ]
    # summac (SummaC-ZS): max entailment over chunks minus max contradiction over chunks.
    assert claim_scores(ENTAILMENT, CONTRADICTION, scoring="summac") == [
        (pytest.approx(0.9 - 0.6), 0, 1),
        (pytest.approx(0.3 - 0.9), 1, 2),
    ]


@pytest.mark.parametrize(("scoring", "expected"), [("best_chunk", [0.85, 0.2]), ("summac", [0.3, -0.6])])
def test_metric_aggregates_claims_and_keeps_evidence(
    fake_nli: Any, scoring: str, expected: list[float]
) -> None:
    runtime = fake_nli(table())
    scores = Factuality(scoring=scoring).score_batch([{"prediction": PREDICTION, "source": SOURCE}], runtime)  # type: ignore[arg-type]
    assert scores["mean"] == [pytest.approx(sum(expected) / 2)]
    assert scores["min"] == [pytest.approx(min(expected))]
    claims = scores["claims"][0]
    assert [claim["claim"] for claim in claims] == CLAIMS
    assert [claim["score"] for claim in claims] == pytest.approx(expected)
    assert claims[1]["contradicting"] == "It closed in 2020."
    assert claims[1]["contradiction"] == pytest.approx(0.9)
    assert claims[0]["support"] == "The plant opened in 1998."
    assert claims[0]["entailment"] == pytest.approx(0.9)
    assert sorted(runtime.requested) == sorted(table())


def test_long_sources_are_windowed_never_truncated(fake_nli: Any) -> None:
    sentences = [f"Fact number {i} is about the plant and its workers." for i in range(60)]
    source = " ".join(sentences)
    claim = "The plant has workers."
    runtime = fake_nli({}, max_length=64)
    Factuality(granularity="window").score_batch([{"prediction": claim, "source": source}], runtime)
    premises = [premise for premise, _ in runtime.requested]
    tokenizer, _ = runtime.nli_tokenizer("any")
    # Every chunk fits beside the claim, and together the chunks hold every sentence, in order.
    for premise in premises:
        assert len(tokenizer(premise, claim)["input_ids"]) <= 64
    assert " ".join(premises) == source
    assert 1 < len(premises) < len(sentences)


def test_an_overlong_sentence_is_cut_into_spans(fake_nli: Any) -> None:
    words = " ".join(f"word{i}" for i in range(300))  # one "sentence" far over the limit
    runtime = fake_nli({}, max_length=128)
    Factuality().score_batch([{"prediction": "A claim.", "source": words}], runtime)
    premises = [premise for premise, _ in runtime.requested]
    assert len(premises) > 1
    assert " ".join(premises) == words


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="granularity"):
        Factuality(granularity="page")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="scoring"):
        Factuality(scoring="vote")  # type: ignore[arg-type]


@pytest.mark.model
def test_real_model_prefers_the_supported_summary() -> None:
    source = "A man is sleeping on a couch in the living room. His dog lies beside him."
    records = [
        {"id": "supported", "source": source, "prediction": "A person sleeps."},
        {"id": "contradicted", "source": source, "prediction": "A man is running a marathon."},
    ]
    with Scorer(["factuality"], device="cpu", cache=False) as scorer:
        scores = scorer.score(records)["factuality_mean"].to_list()
    assert scores[0] > 0.5
    assert scores[1] < 0.0
