"""SummaC's two ways from a (source chunk × claim) NLI matrix to claim scores (Laban et al., TACL 2022).

Zero-shot (``summac-zs``): a claim's score is entailment minus contradiction, read off the matrix.
Convolutional (``summac-conv``): a claim's column is binned into histograms that a fitted layer
maps to P(consistent) (:mod:`metrics.factuality_conv`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from metrics.base import Scores
from metrics.factuality_conv import Aggregator, claim_histograms, sigmoid

ClaimScoring = Literal["summac", "best_chunk"]


def claim_scores(
    entailment: Sequence[Sequence[float]],
    contradiction: Sequence[Sequence[float]],
    *,
    scoring: ClaimScoring = "best_chunk",
) -> list[tuple[float, int, int]]:
    """For each claim: ``(score, supporting chunk, contradicting chunk)`` from ``[chunk][claim]`` matrices.

    ``best_chunk``: entailment minus contradiction of the single chunk where that is highest, so
    a spurious contradiction from an unrelated chunk cannot sink a supported claim.
    ``summac`` (SummaC-ZS exactly): the highest entailment over chunks minus the highest
    contradiction over chunks, which may come from different chunks.
    The supporting chunk is the best chunk (``best_chunk``) or the most entailing one (``summac``);
    the contradicting chunk is the one with the highest contradiction.

    >>> claim_scores([[0.9], [0.2]], [[0.0], [0.7]])
    [(0.9, 0, 1)]
    >>> claim_scores([[0.9], [0.2]], [[0.0], [0.7]], scoring="summac")
    [(0.20000000000000007, 0, 1)]
    """
    chunks = range(len(entailment))
    results = []
    for claim in range(len(entailment[0]) if entailment else 0):
        contradicting = max(chunks, key=lambda i: contradiction[i][claim])
        if scoring == "summac":
            supporting = max(chunks, key=lambda i: entailment[i][claim])
            score = entailment[supporting][claim] - contradiction[contradicting][claim]
        else:
            supporting = max(chunks, key=lambda i: entailment[i][claim] - contradiction[i][claim])
            score = entailment[supporting][claim] - contradiction[supporting][claim]
        results.append((score, supporting, contradicting))
    return results


@dataclass(frozen=True)
class ClaimMatrix:
    """One record's source chunks, claims and ``[chunk][claim]`` NLI probabilities."""

    chunks: list[str]
    claims: list[str]
    entailment: list[list[float]]
    contradiction: list[list[float]]

    def details(
        self, scores: Sequence[float], evidence: Sequence[tuple[float, int, int]]
    ) -> list[dict[str, Any]]:
        """Per claim: its score, the chunk that supports it best and the one that contradicts it most
        (``evidence`` as :func:`claim_scores` gives it)."""
        return [
            {
                "claim": claim,
                "score": score,
                "support": self.chunks[supporting],
                "entailment": self.entailment[supporting][j],
                "contradicting": self.chunks[contradicting],
                "contradiction": self.contradiction[contradicting][j],
            }
            for j, (claim, score, (_, supporting, contradicting)) in enumerate(
                zip(self.claims, scores, evidence, strict=True)
            )
        ]


def summac_zs_scores(matrices: Sequence[ClaimMatrix], scoring: ClaimScoring) -> Scores:
    """``mean`` and ``min`` over each record's claim scores (in [-1, 1]), and the ``claims``."""
    scores: Scores = {"mean": [], "min": [], "claims": []}
    for matrix in matrices:
        per_claim = claim_scores(matrix.entailment, matrix.contradiction, scoring=scoring)
        values = [score for score, _, _ in per_claim]
        scores["mean"].append(sum(values) / len(values))
        scores["min"].append(min(values))
        scores["claims"].append(matrix.details(values, per_claim))
    return scores


def summac_conv_scores(matrices: Sequence[ClaimMatrix], aggregator: Aggregator) -> Scores:
    """Each claim's P(consistent) from its histograms; ``mean`` is P at the claims' mean logit, which
    is what the layer was fitted to predict from a record's mean histogram."""
    scores: Scores = {"mean": [], "min": [], "claims": []}
    for matrix in matrices:
        logits = aggregator.claim_logits(
            claim_histograms(matrix.entailment, matrix.contradiction, aggregator.bins)
        )
        values = sigmoid(logits).tolist()
        scores["mean"].append(float(sigmoid(logits.mean())))
        scores["min"].append(min(values))
        evidence = claim_scores(matrix.entailment, matrix.contradiction, scoring="summac")
        scores["claims"].append(matrix.details(values, evidence))
    return scores
