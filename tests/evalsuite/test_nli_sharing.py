"""NLI metrics share model inputs: a pair that two metrics need reaches the model once."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evalsuite.api import Scorer

SAMPLES = ["Paris is the capital.", "It is Paris.", "Lyon is the capital."]


def test_a_pair_needed_by_two_metrics_is_scored_once(tiny_cross_encoder: Callable[..., Path]) -> None:
    model = str(tiny_cross_encoder())
    # The prediction is also sample 0 (a greedy answer among its samples, as is common), so
    # selfcheck_nli's (sentence, sample) pairs are semantic_entropy's (sample 0, sample j) pairs.
    records: list[dict[str, Any]] = [{"id": "0", "prediction": SAMPLES[0], "samples": SAMPLES}]
    config = {"model": model}

    def run(*metrics: str) -> tuple[Any, Any]:
        with Scorer({name: config for name in metrics}, device="cpu", cache=False) as scorer:
            return scorer.score(records), scorer.runtime.stats

    together, stats = run("semantic_entropy", "selfcheck_nli")
    entropy_pairs = set(itertools.permutations(SAMPLES, 2))
    selfcheck_pairs = {(SAMPLES[0], sample) for sample in SAMPLES}
    assert entropy_pairs & selfcheck_pairs  # the test needs an overlap to mean anything
    assert stats.nli_pairs_requested == len(entropy_pairs) + len(selfcheck_pairs)
    assert stats.nli_pairs_scored == len(entropy_pairs | selfcheck_pairs)
    assert stats.texts_encoded == len(entropy_pairs | selfcheck_pairs)

    # Sharing changes nothing in the scores: each metric alone gives the same numbers.
    for name in ("semantic_entropy", "selfcheck_nli"):
        alone, alone_stats = run(name)
        for column in alone.score_columns:
            assert together[column].to_list() == pytest.approx(alone[column].to_list(), abs=1e-6, nan_ok=True)
    assert alone_stats.nli_pairs_scored == len(selfcheck_pairs)
