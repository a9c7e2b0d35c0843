"""Semantic entropy: clusters and entropies against hand computations, then with the real NLI model."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from evalsuite.api import Scorer
from metrics.semantic_entropy import (
    SemanticEntropy,
    discrete_semantic_entropy,
    equivalent,
    predicted_class,
    semantic_clusters,
    semantic_entropy,
)

ENTAIL, NEUTRAL, CONTRADICT = (0.8, 0.15, 0.05), (0.1, 0.8, 0.1), (0.05, 0.15, 0.8)
SAMPLES = ["Paris.", "It is Paris.", "Lyon.", "It is Lyon.", "Paris."]


def table_for(relations: dict[tuple[int, int], tuple[float, float, float]]) -> dict[tuple[str, str], Any]:
    return {(SAMPLES[i], SAMPLES[j]): probabilities for (i, j), probabilities in relations.items()}


# Samples 0, 1 and 4 say Paris (4 repeats 0 verbatim), 2 and 3 say Lyon; Paris and Lyon contradict.
PARIS, LYON = (0, 1, 4), (2, 3)
RELATIONS = {
    **{(i, j): ENTAIL for group in (PARIS, LYON) for i in group for j in group if i != j},
    **{(i, j): CONTRADICT for i in PARIS for j in LYON},
    **{(j, i): CONTRADICT for i in PARIS for j in LYON},
}


def test_predicted_class_and_equivalence_rules() -> None:
    assert [predicted_class(p) for p in (ENTAIL, NEUTRAL, CONTRADICT)] == [0, 1, 2]
    assert equivalent(0, 0, strict=True)
    assert not equivalent(0, 1, strict=True)
    assert equivalent(0, 1, strict=False)  # one way entails, the other is neutral
    assert not equivalent(1, 1, strict=False)  # both merely neutral
    assert not equivalent(0, 2, strict=False)  # a contradiction either way


def test_clusters_follow_the_reference_algorithm_including_reassignment() -> None:
    # 0~2 and 1~2 but not 0~1: the reference lets opener 1 take 2 away from cluster 0.
    pairs = {(0, 2), (1, 2)}
    assert semantic_clusters(3, lambda i, j: (i, j) in pairs) == [0, 1, 1]
    assert semantic_clusters(4, lambda i, j: False) == [0, 1, 2, 3]
    assert semantic_clusters(1, lambda i, j: True) == [0]


def test_entropies_by_hand() -> None:
    ids = [0, 0, 1, 1, 0]
    assert discrete_semantic_entropy(ids) == pytest.approx(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4)))
    logprobs = [-1.0, -2.0, -0.5, -3.0, -1.5]
    likelihood = np.exp(logprobs)
    p_paris = likelihood[[0, 1, 4]].sum() / likelihood.sum()
    expected = -(p_paris * math.log(p_paris) + (1 - p_paris) * math.log(1 - p_paris))
    assert semantic_entropy(ids, logprobs) == pytest.approx(expected, abs=1e-12)
    # Log-likelihoods far below exp's range still give a finite, correct answer.
    assert semantic_entropy(ids, [value - 2000 for value in logprobs]) == pytest.approx(expected, abs=1e-9)
    assert semantic_entropy([0, 0], [-1.0, -5.0]) == 0.0


def test_metric_on_a_fake_nli_runtime(fake_nli: Any) -> None:
    runtime = fake_nli(table_for(RELATIONS))
    records = [
        {"samples": SAMPLES, "sample_logprobs": [-1.0, -2.0, -0.5, -3.0, -1.5]},
        {"samples": ["Paris."]},
    ]
    scores = SemanticEntropy().score_batch(records, runtime)
    assert scores["cluster_ids"] == [[0, 0, 1, 1, 0], [0]]
    assert scores["clusters"] == [2.0, 1.0]
    assert scores["discrete_entropy"][0] == pytest.approx(discrete_semantic_entropy([0, 0, 1, 1, 0]))
    assert scores["discrete_entropy"][1] == 0.0
    assert scores["entropy"][0] == pytest.approx(
        semantic_entropy([0, 0, 1, 1, 0], [-1.0, -2.0, -0.5, -3.0, -1.5])
    )
    assert scores["entropy"][1] is None  # no log-probabilities, no likelihood-weighted entropy
    # Every distinct ordered pair of samples was asked for once (sample 4 repeats sample 0).
    assert sorted(runtime.requested) == sorted(set(itertools.permutations(SAMPLES, 2)))
    assert len(runtime.requested) == 4 * 3 + 1


def test_strictness_changes_clusters(fake_nli: Any) -> None:
    samples = ["A dog barks.", "An animal makes a noise."]
    # The specific entails the general, not the other way round (neutral).
    runtime = fake_nli({(samples[0], samples[1]): ENTAIL, (samples[1], samples[0]): NEUTRAL})
    strict = SemanticEntropy(strict=True).score_batch([{"samples": samples}], runtime)
    loose = SemanticEntropy(strict=False).score_batch([{"samples": samples}], runtime)
    assert strict["cluster_ids"] == [[0, 1]]
    assert loose["cluster_ids"] == [[0, 0]]
    # The default is the non-strict rule (see the class docstring for why).
    assert SemanticEntropy().score_batch([{"samples": samples}], runtime) == loose


@pytest.mark.model
def test_real_model_separates_contradicting_answers() -> None:
    records: list[dict[str, Any]] = [
        {
            "id": "same",
            "samples": ["The capital of France is Paris."] * 2 + ["Paris is the capital of France."],
        },
        {"id": "split", "samples": ["A man is sleeping.", "A man is running a marathon."]},
    ]
    with Scorer(["semantic_entropy"], device="cpu", cache=False) as scorer:
        table = scorer.score(records).table
    assert table["semantic_entropy_clusters"].to_list() == [1.0, 2.0]
    assert table["semantic_entropy_discrete_entropy"].to_list() == pytest.approx([0.0, math.log(2)])
