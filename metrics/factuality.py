"""Factuality against a source, SummaC-ZS style (Laban et al., TACL 2022).

The source is cut into chunks (sentences, or windows of sentences) that fit the NLI model beside
a claim, and the prediction into claim sentences. An NLI matrix over (chunk, claim) gives each
claim a score in [-1, 1]; the record's score aggregates its claims. Long sources are windowed,
never truncated. Differences from the reference ``summac`` package: sentences are split by pysbd
(not NLTK), short sentences are kept, and there is no cap on the number of source chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from evalsuite.errors import ConfigError
from metrics.base import Scores, register_metric
from metrics.nli_metric import DEFAULT_NLI_MODEL, NLIMetric
from metrics.sentences import split_sentences, token_chunks

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

Granularity = Literal["sentence", "window"]
ClaimScoring = Literal["summac", "best_chunk"]
MIN_CHUNK_TOKENS = 16  # below this a chunk carries too little context to judge anything


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


@register_metric("factuality")
class Factuality(NLIMetric):
    """How well the source supports the prediction's claims, in [-1, 1]; higher is better.

    Needs ``prediction`` and ``source``. Each claim sentence takes its best-supporting chunk's
    entailment minus contradiction (``scoring="summac"``: SummaC-ZS's max entailment minus max
    contradiction, see :func:`claim_scores`); ``mean`` and ``min`` aggregate over claims
    (``min`` flags a single unsupported claim). ``claims`` keeps, per claim, its score, the source
    chunk that supports it best and the one that contradicts it most, with their probabilities.
    ``granularity="window"`` packs consecutive source sentences into chunks up to the model limit.

    >>> Factuality().columns
    ['factuality_mean', 'factuality_min']
    """

    fields = ("prediction", "source")
    score_names = ("mean", "min")
    detail_names = ("claims",)
    description = (
        "SummaC-ZS: per claim sentence, NLI entailment minus contradiction by the best source chunks."
    )
    citation = "Laban, Schnabel, Bennett & Hearst, SummaC, TACL 2022."

    def __init__(
        self,
        *,
        model: str = DEFAULT_NLI_MODEL,
        granularity: Granularity = "sentence",
        scoring: ClaimScoring = "best_chunk",
        language: str = "en",
        label_map: Mapping[str, str] | None = None,
    ) -> None:
        if granularity not in ("sentence", "window"):
            raise ConfigError(f"granularity must be 'sentence' or 'window', got {granularity!r}")
        if scoring not in ("summac", "best_chunk"):
            raise ConfigError(f"scoring must be 'summac' or 'best_chunk', got {scoring!r}")
        super().__init__(
            model=model, label_map=label_map, granularity=granularity, scoring=scoring, language=language
        )
        self.granularity: Granularity = granularity
        self.scoring: ClaimScoring = scoring
        self.language = language

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        tokenizer, max_length = rt.nli_tokenizer(self.model)
        claims = [split_sentences(record["prediction"], self.language) for record in records]
        chunks = [
            self._chunks(record["source"], record_claims, tokenizer, max_length)
            for record, record_claims in zip(records, claims, strict=True)
        ]
        pairs = [
            (chunk, claim)
            for record_chunks, record_claims in zip(chunks, claims, strict=True)
            for chunk in record_chunks
            for claim in record_claims
        ]
        probabilities = self.probabilities(rt, pairs)
        scores: Scores = {"mean": [], "min": [], "claims": []}
        for record_chunks, record_claims in zip(chunks, claims, strict=True):
            matrix = [[probabilities[(chunk, claim)] for claim in record_claims] for chunk in record_chunks]
            entailment = [[row[0] for row in line] for line in matrix]
            contradiction = [[row[2] for row in line] for line in matrix]
            per_claim = claim_scores(entailment, contradiction, scoring=self.scoring)
            values = [score for score, _, _ in per_claim]
            scores["mean"].append(sum(values) / len(values))
            scores["min"].append(min(values))
            scores["claims"].append(
                [
                    {
                        "claim": claim,
                        "score": score,
                        "support": record_chunks[supporting],
                        "entailment": entailment[supporting][j],
                        "contradicting": record_chunks[contradicting],
                        "contradiction": contradiction[contradicting][j],
                    }
                    for j, (claim, (score, supporting, contradicting)) in enumerate(
                        zip(record_claims, per_claim, strict=True)
                    )
                ]
            )
        return scores

    def _chunks(self, source: str, claims: Sequence[str], tokenizer: Any, max_length: int) -> list[str]:
        """Source chunks that fit beside the longest claim within the model's limit."""
        encoded = tokenizer(list(claims), add_special_tokens=False, verbose=False)
        longest_claim = max(len(ids) for ids in encoded["input_ids"])
        budget = max_length - tokenizer.num_special_tokens_to_add(pair=True) - longest_claim
        sentences = split_sentences(source, self.language)
        return token_chunks(
            sentences, tokenizer, max(budget, MIN_CHUNK_TOKENS), pack=self.granularity == "window"
        )
