"""SelfCheckGPT-NLI (Manakul et al., EMNLP 2023): sentences that the model's own samples contradict.

For each sentence of the prediction and each sampled answer, the NLI contradiction probability
normalised over entailment and contradiction (neutral dropped), averaged over samples. The pair
order follows the reference code (``selfcheckgpt.modeling_selfcheck.SelfCheckNLI``): the sentence
is the premise and the sample the hypothesis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from metrics.base import Scores, register_metric
from metrics.nli_metric import DEFAULT_NLI_MODEL, NLIMetric, Probabilities
from metrics.sentences import split_sentences

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime


def contradiction_ratio(probabilities: Probabilities) -> float:
    """P(contradiction) / (P(entailment) + P(contradiction)); 0.5 when both are 0 (no evidence)."""
    entailment, _, contradiction = probabilities
    total = entailment + contradiction
    return contradiction / total if total > 0 else 0.5


def sentence_scores(ratios: Sequence[Sequence[float]]) -> list[float]:
    """Per sentence, the mean over samples of the contradiction ratios ``[sentence][sample]``."""
    return [sum(row) / len(row) for row in ratios]


@register_metric("selfcheck_nli")
class SelfCheckNLI(NLIMetric):
    """How much the model's own samples contradict its answer, in [0, 1]; lower is better.

    Needs ``prediction`` and ``samples``. ``mean`` and ``max`` aggregate the per-sentence scores
    (a single contradicted sentence shows in ``max``); ``sentences`` keeps each sentence with its
    score for review.

    >>> SelfCheckNLI().columns
    ['selfcheck_nli_mean', 'selfcheck_nli_max']
    """

    fields = ("prediction", "samples")
    score_names = ("mean", "max")
    detail_names = ("sentences",)
    higher_is_better = False
    description = (
        "Mean (and max) over the prediction's sentences of how strongly the sampled answers contradict them."
    )
    citation = "Manakul, Liusie & Gales, SelfCheckGPT, EMNLP 2023."

    def __init__(
        self,
        *,
        model: str = DEFAULT_NLI_MODEL,
        language: str = "en",
        label_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(model=model, label_map=label_map, language=language)
        self.language = language

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        sentences = [split_sentences(record["prediction"], self.language) for record in records]
        pairs = [
            (sentence, sample)
            for record, record_sentences in zip(records, sentences, strict=True)
            for sentence in record_sentences
            for sample in record["samples"]
        ]
        probabilities = self.probabilities(rt, pairs)
        scores: Scores = {"mean": [], "max": [], "sentences": []}
        for record, record_sentences in zip(records, sentences, strict=True):
            ratios = [
                [contradiction_ratio(probabilities[(sentence, sample)]) for sample in record["samples"]]
                for sentence in record_sentences
            ]
            per_sentence = sentence_scores(ratios)
            scores["mean"].append(sum(per_sentence) / len(per_sentence))
            scores["max"].append(max(per_sentence))
            scores["sentences"].append(
                [
                    {"sentence": sentence, "score": score}
                    for sentence, score in zip(record_sentences, per_sentence, strict=True)
                ]
            )
        return scores
