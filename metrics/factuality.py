"""Factuality against a source: the prediction's claims checked against chunks of the source.

Three checkers (``checker=``) share the metric's fields and columns:

- ``summac-zs`` (SummaC-ZS, Laban et al., TACL 2022; the default): the source is cut into chunks
  (sentences, or windows of sentences) that fit the NLI model beside a claim, and the prediction
  into claim sentences. An NLI matrix over (chunk, claim) gives each claim a score in [-1, 1]; the
  record's score aggregates its claims. Long sources are windowed, never truncated. Differences
  from the reference ``summac`` package: sentences are split by pysbd (not NLTK), short sentences
  are kept, and there is no cap on the number of source chunks.
- ``summac-conv`` (SummaC-Conv, same paper): the same matrix, each claim's column binned into
  histograms that a fitted layer maps to P(consistent) (:mod:`metrics.factuality_conv`).
- ``minicheck`` (MiniCheck, Tang, Laban & Durrett, EMNLP 2024): the source in chunks of about 400
  words, each claim's P(supported) the best over the chunks, with a verdict and the evidence's
  offsets (:mod:`metrics.factuality_minicheck`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from evalsuite._validation import check_choice, check_positive_int, either, invalid
from evalsuite.errors import ConfigError
from metrics.base import Scores, register_metric
from metrics.factuality_conv import DEFAULT_BINS, Aggregator, claim_histograms, fit_aggregator, fit_hint
from metrics.factuality_minicheck import DEFAULT_CHUNK_WORDS, DEFAULT_OVERLAP, ClaimUnit, minicheck_scores
from metrics.factuality_summac import (
    ClaimMatrix,
    ClaimScoring,
    claim_scores,
    summac_conv_scores,
    summac_zs_scores,
)
from metrics.nli_metric import DEFAULT_NLI_MODEL, NLIMetric
from metrics.sentences import premise_token_budget, split_sentences, token_chunks

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

__all__ = [
    "CHECKER_OPTIONS",
    "DEFAULT_CHECKER",
    "DEFAULT_MODEL",
    "ClaimMatrix",
    "Factuality",
    "claim_scores",
    "fit_summac_conv",
]

Checker = Literal["summac-zs", "summac-conv", "minicheck"]
Granularity = Literal["sentence", "window"]

# The metric's defaults, here only.
DEFAULT_CHECKER: Checker = "summac-zs"
DEFAULT_MODEL = DEFAULT_NLI_MODEL

# The options each checker reads beyond model and language; giving one to another checker is an error.
CHECKER_OPTIONS: dict[str, dict[str, Any]] = {
    "summac-zs": {"granularity": "sentence", "scoring": "best_chunk", "label_map": None},
    "summac-conv": {"granularity": "sentence", "aggregator": None, "label_map": None},
    "minicheck": {
        "claims": "sentences",
        "chunk_words": DEFAULT_CHUNK_WORDS,
        "overlap": DEFAULT_OVERLAP,
        "threshold": None,
        "label_map": None,
    },
}


@register_metric("factuality")
class Factuality(NLIMetric):
    """How well the source supports the prediction's claims; higher is better.

    Needs ``prediction`` and ``source``; ``mean`` and ``min`` aggregate over claims (``min`` flags a
    single unsupported claim), and ``claims`` keeps each claim's score and evidence. ``checker``:

    - ``"summac-zs"`` (default), scores in [-1, 1]: each claim sentence takes its best-supporting
      chunk's entailment minus contradiction (``scoring="summac"``: SummaC-ZS's max entailment minus
      max contradiction, see :func:`claim_scores`); ``granularity="window"`` packs consecutive source
      sentences into chunks up to the model limit.
    - ``"summac-conv"``, P(consistent) in [0, 1]: a fitted ``aggregator`` (a JSON file written by
      ``evalsuite factuality-fit``, on the same ``model``) maps each claim's histograms of entailment
      and contradiction over the chunks to a probability; ``mean`` is that of the mean claim logit.
    - ``"minicheck"``, P(supported) in [0, 1]: each claim (``claims="sentences"`` of the prediction,
      or the ``"whole"`` prediction) takes its best chunk of about ``chunk_words`` words
      (consecutive chunks share ``overlap`` sentences); a claim is supported at P >= ``threshold``
      (default: the model's calibrated threshold, else 0.5), and ``all_supported`` is 1 when
      every claim of the record is.

    >>> Factuality().columns
    ['factuality_mean', 'factuality_min']
    >>> Factuality(checker="minicheck").columns
    ['factuality_mean', 'factuality_min', 'factuality_all_supported']
    """

    fields = ("prediction", "source")
    score_names: tuple[str, ...] = ("mean", "min")
    detail_names = ("claims",)
    description = (
        "Claims of the prediction against source chunks: SummaC-ZS (NLI entailment minus contradiction, "
        "default), SummaC-Conv (a fitted layer over NLI histograms) or MiniCheck (P(supported), best chunk)."
    )
    citation = (
        "Laban, Schnabel, Bennett & Hearst, SummaC, TACL 2022; Tang, Laban & Durrett, MiniCheck, EMNLP 2024."
    )

    def __init__(
        self,
        *,
        checker: Checker = DEFAULT_CHECKER,
        model: str = DEFAULT_MODEL,
        granularity: Granularity | None = None,
        scoring: ClaimScoring | None = None,
        aggregator: str | os.PathLike[str] | None = None,
        claims: ClaimUnit | None = None,
        chunk_words: int | None = None,
        overlap: int | None = None,
        threshold: float | None = None,
        language: str = "en",
        label_map: Mapping[str, str] | None = None,
    ) -> None:
        check_choice("checker", checker, tuple(CHECKER_OPTIONS))
        given = {
            "granularity": granularity,
            "scoring": scoring,
            "aggregator": None if aggregator is None else os.fspath(aggregator),
            "claims": claims,
            "chunk_words": chunk_words,
            "overlap": overlap,
            "threshold": threshold,
            "label_map": label_map,
        }
        options = _checker_options(
            checker, {name: value for name, value in given.items() if value is not None}
        )
        super().__init__(model=model, checker=checker, language=language, **options)
        self.checker: Checker = checker
        self.language = language
        self.granularity: Granularity = options.get("granularity", "sentence")
        self.scoring: ClaimScoring = options.get("scoring", "best_chunk")
        self.claim_unit: ClaimUnit = options.get("claims", "sentences")
        self.chunk_words: int = options.get("chunk_words", DEFAULT_CHUNK_WORDS)
        self.overlap: int = options.get("overlap", DEFAULT_OVERLAP)
        self.threshold: float | None = options.get("threshold")
        self._aggregator = self._read_aggregator(options["aggregator"]) if checker == "summac-conv" else None
        if checker == "minicheck":
            self.score_names = ("mean", "min", "all_supported")

    def state_hash(self) -> str:
        # The aggregator file may be refitted in place: its weights, not its path, key the cache.
        return self._aggregator.digest() if self._aggregator else ""

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        if self.checker == "minicheck":
            return minicheck_scores(
                records,
                rt,
                model=self.model,
                claim_unit=self.claim_unit,
                chunk_words=self.chunk_words,
                overlap=self.overlap,
                threshold=self.threshold,
                language=self.language,
                label_map=self.label_map,
            )
        matrices = self.claim_matrices(records, rt)
        if self._aggregator is not None:  # summac-conv
            return summac_conv_scores(matrices, self._aggregator)
        return summac_zs_scores(matrices, self.scoring)

    # -- SummaC: an NLI matrix per record ---------------------------------------------------------
    def claim_matrices(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> list[ClaimMatrix]:
        """Each record's chunks, claim sentences and NLI matrix (every pair of the batch in one call)."""
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
        matrices = []
        for record_chunks, record_claims in zip(chunks, claims, strict=True):
            matrix = [[probabilities[(chunk, claim)] for claim in record_claims] for chunk in record_chunks]
            entailment = [[row[0] for row in line] for line in matrix]
            contradiction = [[row[2] for row in line] for line in matrix]
            matrices.append(ClaimMatrix(record_chunks, record_claims, entailment, contradiction))
        return matrices

    def _chunks(self, source: str, claims: Sequence[str], tokenizer: Any, max_length: int) -> list[str]:
        """Source chunks that fit beside the longest claim within the model's limit."""
        budget = premise_token_budget(tokenizer, max_length, claims)
        sentences = split_sentences(source, self.language)
        return token_chunks(sentences, tokenizer, budget, pack=self.granularity == "window")

    def _read_aggregator(self, path: str | None) -> Aggregator:
        """The aggregator at ``path``, refused unless fitted with this metric's model and chunking."""
        hint = fit_hint(self.model, self.granularity, self.language)
        if path is None:
            raise ConfigError(
                f"checker 'summac-conv' needs aggregator=<file>, a layer fitted on labelled records: {hint}"
            )
        aggregator = Aggregator.read(path)
        fitted = {
            "model": aggregator.nli_model,
            "granularity": aggregator.granularity,
            "language": aggregator.language,
        }
        ours = {"model": self.model, "granularity": self.granularity, "language": self.language}
        for option, value in fitted.items():
            if ours[option] != value:
                raise ConfigError(
                    f"aggregator {path!r} was fitted with {option}={value!r}, but this metric has "
                    f"{option}={ours[option]!r}: pass {option}={value!r}, or {hint}"
                )
        return aggregator


def _checker_options(checker: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The checker's options: its defaults overridden by the ``given`` ones, each checked."""
    for name in given:
        if name not in CHECKER_OPTIONS[checker]:
            users = [other for other, options in CHECKER_OPTIONS.items() if name in options]
            raise ConfigError(f"option {name!r} applies to checker {either(users)}, not to {checker!r}")
    options = {**CHECKER_OPTIONS[checker], **given}
    if "granularity" in given:
        check_choice("granularity", given["granularity"], ("sentence", "window"))
    if "scoring" in given:
        check_choice("scoring", given["scoring"], ("summac", "best_chunk"))
    if "claims" in given:
        check_choice("claims", given["claims"], ("sentences", "whole"))
    if "chunk_words" in given:
        check_positive_int("chunk_words", given["chunk_words"])
    if "overlap" in given:
        overlap = given["overlap"]
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            raise invalid("overlap", "an integer >= 0 (sentences shared by consecutive chunks)", overlap)
    if "threshold" in given:
        threshold = given["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise invalid("threshold", "a number within [0, 1]", threshold)
    return options


def fit_summac_conv(
    records: Sequence[Mapping[str, Any]],
    labels: Sequence[int],
    rt: Runtime,
    *,
    model: str = DEFAULT_MODEL,
    bins: int = DEFAULT_BINS,
    granularity: Granularity = "sentence",
    language: str = "en",
    file: str = "",
    sha256: str = "",
) -> Aggregator:
    """Fit a SummaC-Conv aggregator on validated records (``source``, ``prediction``) and their labels
    (1 consistent, 0 not), with the NLI matrices the metric itself computes."""
    check_positive_int("bins", bins)
    metric = Factuality(model=model, granularity=granularity, language=language)
    histograms = [
        claim_histograms(matrix.entailment, matrix.contradiction, bins)
        for matrix in metric.claim_matrices(records, rt)
    ]
    return fit_aggregator(
        histograms,
        labels,
        bins=bins,
        nli_model=model,
        granularity=granularity,
        language=language,
        file=file,
        sha256=sha256,
    )
