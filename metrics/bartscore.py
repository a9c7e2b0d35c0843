"""BARTScore (Yuan et al., NeurIPS 2021) and its decoder-only form (GPTScore, Fu et al., NAACL 2024).

A text y is scored given a text x by the mean log-probability of y's tokens under a language
model: a seq2seq model reads x in its encoder and is teacher-forced on y (BARTScore exactly, with
the target's special tokens scored as in the reference code); a causal LM reads x in a prompt and
only y's tokens are scored. Scores are always <= 0 (0 = certain); they compare texts under one
model, never across models, and favour short, generic texts less than a sum would.

Directions, as in the paper: faithfulness = log p(prediction | source); precision =
log p(prediction | reference); recall = log p(reference | prediction); F = their mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from evalsuite.errors import ConfigError
from metrics.base import Metric, Scores, register_metric

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime
    from evalsuite.runtime.core import TargetLogProbs

DEFAULT_LM = "smollm2"
# Instructions for chat models (a causal LM with a chat template); the context follows them.
SUMMARIZE = "Summarize the following text.\n\n"
PARAPHRASE = "Paraphrase the following text.\n\n"
ReferenceAggregate = Literal["max", "mean"]


def mean_log_likelihood(log_probs: Sequence[float]) -> float:
    """The BARTScore of one (context, target) pair: the mean of the target's token log-probabilities."""
    if not log_probs:
        raise ConfigError("a target with no tokens has no likelihood")
    return sum(log_probs) / len(log_probs)


def token_evidence(scored: TargetLogProbs) -> list[dict[str, Any]]:
    """Each target token with its log-probability, for the dashboard."""
    return [
        {"token": token, "logprob": value}
        for token, value in zip(scored.tokens, scored.log_probs.tolist(), strict=True)
    ]


class _LikelihoodMetric(Metric):
    """Shared options: the model, the BARTScore prompt, and how a context becomes a model input."""

    instruction: str = ""

    def __init__(self, *, model: str = DEFAULT_LM, prompt: str = "", **config: Any) -> None:
        super().__init__(model=model, prompt=prompt, **config)
        self.model = model
        self.prompt = prompt

    def models(self) -> list[str]:
        return [self.model]

    def context(self, rt: Runtime, text: str) -> str:
        """The model input for ``text``: BARTScore's prompt appended, in a chat turn for chat models."""
        text = f"{text} {self.prompt}".rstrip() if self.prompt else text
        lm = rt.language_model(self.model)
        template = getattr(lm.tokenizer, "chat_template", None)
        if template and not getattr(lm.model.config, "is_encoder_decoder", False):
            message = [{"role": "user", "content": self.instruction + text}]
            return str(lm.tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True))
        return text

    def score_pairs(
        self, rt: Runtime, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], TargetLogProbs]:
        """Token log-probabilities of each distinct (context, target) pair, in one batched call."""
        unique = list(dict.fromkeys(pairs))
        inputs = [(self.context(rt, context), target) for context, target in unique]
        return dict(zip(unique, rt.target_log_probs(self.model, inputs), strict=True))


@register_metric("bartscore_faithfulness")
class BARTScoreFaithfulness(_LikelihoodMetric):
    """log p(prediction | source): how likely the model finds the prediction given the source; <= 0.

    Needs ``source`` and ``prediction``; higher (closer to 0) is better. ``tokens`` keeps each
    prediction token's log-probability. With a chat model the source is put in a "Summarize"
    instruction.

    >>> BARTScoreFaithfulness().columns
    ['bartscore_faithfulness_score']
    """

    fields = ("source", "prediction")
    score_names = ("score",)
    detail_names = ("tokens",)
    description = "Mean token log-likelihood of the prediction given the source (BARTScore faithfulness)."
    citation = "Yuan, Neubig & Liu, BARTScore, NeurIPS 2021; Fu et al., GPTScore, NAACL 2024."
    instruction = SUMMARIZE

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        scored = self.score_pairs(rt, [(r["source"], r["prediction"]) for r in records])
        results = [scored[(r["source"], r["prediction"])] for r in records]
        return {
            "score": [mean_log_likelihood(result.log_probs.tolist()) for result in results],
            "tokens": [token_evidence(result) for result in results],
        }


@register_metric("bartscore")
class BARTScore(_LikelihoodMetric):
    """Reference-based BARTScore: precision, recall and F (their mean), each <= 0; higher is better.

    Needs ``prediction`` and ``references``. With several references each score is the ``max``
    (default) or ``mean`` over references, taken on its own. ``tokens`` keeps the prediction's
    token log-probabilities given its best reference (by precision). With a chat model the
    context is put in a "Paraphrase" instruction.

    >>> BARTScore().columns
    ['bartscore_precision', 'bartscore_recall', 'bartscore_f']
    """

    fields = ("prediction", "references")
    score_names = ("precision", "recall", "f")
    detail_names = ("tokens",)
    description = (
        "Mean token log-likelihood of prediction given reference (P), reverse (R), and their mean (F)."
    )
    citation = "Yuan, Neubig & Liu, BARTScore, NeurIPS 2021."
    instruction = PARAPHRASE

    def __init__(
        self, *, model: str = DEFAULT_LM, references: ReferenceAggregate = "max", prompt: str = ""
    ) -> None:
        if references not in ("max", "mean"):
            raise ConfigError(f"references must be 'max' or 'mean', got {references!r}")
        super().__init__(model=model, prompt=prompt, references=references)
        self.aggregate = max if references == "max" else _mean

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        pairs = [
            pair
            for record in records
            for reference in record["references"]
            for pair in ((reference, record["prediction"]), (record["prediction"], reference))
        ]
        scored = self.score_pairs(rt, pairs)
        scores: Scores = {"precision": [], "recall": [], "f": [], "tokens": []}
        for record in records:
            prediction = record["prediction"]
            precision = [
                mean_log_likelihood(scored[(ref, prediction)].log_probs.tolist())
                for ref in record["references"]
            ]
            recall = [
                mean_log_likelihood(scored[(prediction, ref)].log_probs.tolist())
                for ref in record["references"]
            ]
            scores["precision"].append(self.aggregate(precision))
            scores["recall"].append(self.aggregate(recall))
            scores["f"].append(self.aggregate([(p + r) / 2 for p, r in zip(precision, recall, strict=True)]))
            best = record["references"][precision.index(max(precision))]
            scores["tokens"].append(token_evidence(scored[(best, prediction)]))
        return scores


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
