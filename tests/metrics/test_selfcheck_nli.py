"""SelfCheckGPT-NLI: per-sentence contradiction ratios against a hand computation, then for real."""

from __future__ import annotations

from typing import Any

import pytest

from evalsuite.api import Scorer
from metrics.selfcheck_nli import SelfCheckNLI, contradiction_ratio

PREDICTION = "Einstein was born in Ulm. He won the Nobel Prize in 1950."
SENTENCES = ["Einstein was born in Ulm.", "He won the Nobel Prize in 1950."]
SAMPLES = ["Einstein, born in Ulm, won the 1921 Nobel Prize.", "Albert Einstein was born in Germany."]
TABLE = {
    # (sentence, sample): the sentence is the premise, as in the reference code.
    (SENTENCES[0], SAMPLES[0]): (0.7, 0.2, 0.1),
    (SENTENCES[0], SAMPLES[1]): (0.6, 0.3, 0.1),
    (SENTENCES[1], SAMPLES[0]): (0.1, 0.1, 0.8),
    (SENTENCES[1], SAMPLES[1]): (0.2, 0.7, 0.1),
}


def test_contradiction_ratio_drops_neutral() -> None:
    assert contradiction_ratio((0.2, 0.7, 0.1)) == pytest.approx(0.1 / 0.3)
    assert contradiction_ratio((0.0, 1.0, 0.0)) == 0.5  # no entailment nor contradiction: undecided


def test_scores_by_hand(fake_nli: Any) -> None:
    runtime = fake_nli(TABLE)
    scores = SelfCheckNLI().score_batch([{"prediction": PREDICTION, "samples": SAMPLES}], runtime)
    first = (0.1 / 0.8 + 0.1 / 0.7) / 2
    second = (0.8 / 0.9 + 0.1 / 0.3) / 2
    assert [item["sentence"] for item in scores["sentences"][0]] == SENTENCES
    assert [item["score"] for item in scores["sentences"][0]] == pytest.approx([first, second])
    assert scores["mean"] == pytest.approx([(first + second) / 2])
    assert scores["max"] == pytest.approx([second])
    assert sorted(runtime.requested) == sorted(TABLE)


@pytest.mark.model
def test_real_model_flags_the_contradicted_answer() -> None:
    samples = ["A man is running a marathon.", "A man runs a race."]
    records = [
        {"id": "consistent", "prediction": "A man is running a marathon.", "samples": samples},
        {"id": "contradicted", "prediction": "A man is running. A man is sleeping.", "samples": samples},
    ]
    with Scorer(["selfcheck_nli"], device="cpu", cache=False) as scorer:
        results = scorer.score(records)
    consistent, contradicted = results["selfcheck_nli_max"].to_list()
    assert consistent < 0.2
    assert contradicted > 0.8
    sentences = results.table["selfcheck_nli_sentences"].to_list()[1]
    by_sentence = {item["sentence"]: item["score"] for item in sentences}
    assert list(by_sentence) == ["A man is running.", "A man is sleeping."]
    assert by_sentence["A man is sleeping."] == pytest.approx(contradicted)
    assert by_sentence["A man is running."] < by_sentence["A man is sleeping."]
