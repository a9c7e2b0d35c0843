"""A judge: a backend, a template and a kind, turning records into scores.

- ``direct``: a rating from 1 to ``scale``; ``rating`` is the most likely one and ``weighted`` is
  G-Eval's probability-weighted score (the sum of p(k)·k over the rating tokens).
- ``binary``: ``probability`` of the first label (e.g. P(yes), "supported") and its ``verdict`` (1/0).
- ``pairwise``: the pair is judged in both orders to cancel position bias; ``probability_a`` is
  P(A is better) averaged over the orders, ``winner`` 1 (A), 0 (B) or 0.5, a draw, when the orders
  disagree.

With SuperICL (:mod:`evalsuite.judges.supericl`) the prompt carries the plug-in's predictions, and
``plugin_verdict``, ``plugin_confidence`` and ``overrides`` (1 where the judge disagrees with the
plug-in) are added; asked to ``explain``, the judge says why it overrode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalsuite.errors import ConfigError
from evalsuite.judges.backends import JudgeBackend, JudgeReply, JudgeRequest
from evalsuite.judges.supericl import (
    OVERRIDE_QUESTION,
    InContextExample,
    PluginPrediction,
    supericl_prompt,
)
from evalsuite.judges.templates import SECOND_RESPONSE, JudgeTemplate
from evalsuite.judges.verdicts import label_distribution, weighted_rating
from evalsuite.registry import ScoreFailure

__all__ = ["EXPLANATION_TOKENS", "Judge", "SuperICL", "Verdict"]

EXPLANATION_TOKENS = 160
_SCORES = {
    "direct": ("rating", "weighted"),
    "binary": ("probability", "verdict"),
    "pairwise": ("probability_a", "winner"),
}
SUPERICL_SCORES = ("plugin_verdict", "plugin_confidence", "overrides")


@dataclass(frozen=True)
class SuperICL:
    """The plug-in's name as the prompt shows it, its out-of-fold in-context examples, and its
    prediction for each record being judged."""

    plugin: str
    examples: tuple[InContextExample, ...]
    predictions: tuple[PluginPrediction | ScoreFailure, ...]  # a failure: the record has no prediction


@dataclass(frozen=True)
class Verdict:
    scores: dict[str, float]
    reply: str
    distribution: list[dict[str, Any]]  # [{"label", "probability"}] over the template's labels


class Judge:
    """Judges records through ``backend`` with ``template`` (its kind decides the scores)."""

    def __init__(
        self,
        backend: JudgeBackend,
        template: JudgeTemplate,
        *,
        explain: bool = False,
        max_tokens: int | None = None,
    ) -> None:
        if template.kind == "direct" and not template.labels:
            raise ConfigError("a direct template needs its rating labels: call template.with_scale(scale)")
        self.backend = backend
        self.template = template
        self.explain = explain
        self.max_tokens = max_tokens if max_tokens is not None else (EXPLANATION_TOKENS if explain else 1)

    @staticmethod
    def score_names_for(kind: str, *, supericl: bool = False) -> tuple[str, ...]:
        """The score names of a judge of ``kind`` (with the SuperICL columns when it has a plug-in)."""
        return (*_SCORES[kind], *(SUPERICL_SCORES if supericl else ()))

    def judge(
        self, records: Sequence[Mapping[str, Any]], supericl: SuperICL | None = None
    ) -> list[Verdict | ScoreFailure]:
        """One verdict (or failure, e.g. a field the template needs is missing) per record, in order."""
        if supericl is not None and len(supericl.predictions) != len(records):
            raise ConfigError("SuperICL needs one plug-in prediction per record")
        if supericl is not None and self.template.kind == "direct":
            raise ConfigError("SuperICL plug-ins need a binary or pairwise judge (two labels), not direct")
        orders = (False, True) if self.template.kind == "pairwise" else (False,)
        requests: list[JudgeRequest] = []
        owners: list[tuple[int, bool]] = []
        verdicts: list[Verdict | ScoreFailure | None] = [None] * len(records)
        plugins: dict[int, PluginPrediction] = {}  # the plug-in's prediction of each record judged
        for i, record in enumerate(records):
            missing = [name for name in self.template.fields if record.get(name) is None]
            if supericl is not None:
                prediction = supericl.predictions[i]
                if isinstance(prediction, ScoreFailure):
                    verdicts[i] = prediction
                    continue
                plugins[i] = prediction
            if missing:
                verdicts[i] = ScoreFailure(
                    f"the judge template {self.template.name!r} needs field {missing[0]!r}, "
                    "which the record lacks (or is null)"
                )
                continue
            for swapped in orders:
                shown = _swapped(record) if swapped else record
                requests.append(self._request(shown, supericl, plugins.get(i), swapped))
                owners.append((i, swapped))
        replies: dict[tuple[int, bool], JudgeReply | ScoreFailure] = dict(
            zip(owners, self.backend.complete(requests), strict=True)
        )
        for i in range(len(records)):
            if verdicts[i] is None:
                verdicts[i] = self._verdict([replies[(i, swapped)] for swapped in orders], plugins.get(i))
        done = [verdict for verdict in verdicts if verdict is not None]
        if supericl is not None and self.explain:
            self._explain_overrides(records, supericl, plugins, done)
        return done

    # -- prompts ----------------------------------------------------------------------------------
    def _request(
        self,
        record: Mapping[str, Any],
        supericl: SuperICL | None,
        prediction: PluginPrediction | None,
        swapped: bool,
    ) -> JudgeRequest:
        if supericl is None or prediction is None:
            prompt = self.template.render(record, explain=self.explain)
            return self._chat(prompt, self.max_tokens)
        if swapped:  # the plug-in's view of the pair, in the order shown
            prediction = PluginPrediction(
                _other(self.template.labels, prediction.label), prediction.confidence
            )
        examples = supericl.examples
        prompt = supericl_prompt(self.template, supericl.plugin, examples, record, prediction)
        return self._chat(prompt, 1)  # the label; an explanation is asked for separately

    def _chat(self, prompt: str, max_tokens: int) -> JudgeRequest:
        messages = ({"role": "system", "content": self.template.system}, {"role": "user", "content": prompt})
        return JudgeRequest(messages, max_tokens, self.template.labels)

    # -- replies ----------------------------------------------------------------------------------
    def _verdict(
        self, replies: Sequence[JudgeReply | ScoreFailure], plugin: PluginPrediction | None
    ) -> Verdict | ScoreFailure:
        labels = self.template.labels
        distributions = []
        for reply in replies:
            if isinstance(reply, ScoreFailure):
                return reply
            distribution = label_distribution(reply, labels)
            if isinstance(distribution, ScoreFailure):
                return distribution
            distributions.append(distribution)
        text = " | ".join(reply.text for reply in replies if isinstance(reply, JudgeReply))
        kind = self.template.kind
        first = distributions[0]
        if kind == "direct":
            rating = max(labels, key=lambda label: first[label])
            scores = {"rating": float(rating), "weighted": weighted_rating(first)}
        elif kind == "binary":
            probability = first[labels[0]]
            scores = {"probability": probability, "verdict": float(probability >= 0.5)}
        else:  # pairwise: the second order showed B first, so its first label means the original B
            a_first, a_second = first[labels[0]], distributions[1][labels[1]]
            probability = (a_first + a_second) / 2
            agree = (a_first >= 0.5) == (a_second >= 0.5)
            scores = {"probability_a": probability, "winner": float(a_first >= 0.5) if agree else 0.5}
            first = {labels[0]: probability, labels[1]: 1.0 - probability}
        if plugin is not None:
            judged = (
                labels[0] if scores.get("probability", scores.get("probability_a", 0.0)) >= 0.5 else labels[1]
            )
            if kind == "pairwise" and scores["winner"] == 0.5:
                judged = plugin.label  # a draw overrides nothing
            scores |= {
                "plugin_verdict": float(plugin.label == labels[0]),
                "plugin_confidence": plugin.confidence,
                "overrides": float(judged != plugin.label),
            }
        shown = [{"label": label, "probability": float(first[label])} for label in labels]
        return Verdict(scores, text, shown)

    def _explain_overrides(
        self,
        records: Sequence[Mapping[str, Any]],
        supericl: SuperICL,
        plugins: Mapping[int, PluginPrediction],
        verdicts: list[Verdict | ScoreFailure],
    ) -> None:
        """Ask, for each record where the judge overrode the plug-in, why (the paper's follow-up)."""
        overridden = {
            i: verdict
            for i, verdict in enumerate(verdicts)
            if isinstance(verdict, Verdict) and verdict.scores["overrides"]
        }
        requests = []
        for i, verdict in overridden.items():
            judged = max(verdict.distribution, key=lambda item: item["probability"])["label"]
            base = supericl_prompt(self.template, supericl.plugin, supericl.examples, records[i], plugins[i])
            requests.append(self._chat(f"{base} {judged}\n{OVERRIDE_QUESTION}", self.max_tokens))
        for (i, verdict), reply in zip(overridden.items(), self.backend.complete(requests), strict=True):
            explanation = reply.text if isinstance(reply, JudgeReply) else f"(no explanation: {reply.reason})"
            verdicts[i] = Verdict(
                verdict.scores, f"{verdict.reply}\n{OVERRIDE_QUESTION} {explanation}", verdict.distribution
            )


def _swapped(record: Mapping[str, Any]) -> dict[str, Any]:
    return {**record, "prediction": record[SECOND_RESPONSE], SECOND_RESPONSE: record["prediction"]}


def _other(labels: Sequence[str], label: str) -> str:
    return labels[1] if label == labels[0] else labels[0]
