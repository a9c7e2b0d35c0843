"""Reading a verdict from a judge's reply: the probability of each answer label.

The answer is the first generated token that is one of the labels (``"4"``, ``"Yes"``, ``" B"``:
case, spaces and light punctuation are ignored). Its alternatives' log-probabilities give the
distribution over the labels, renormalised over the labels found (G-Eval's reading: the judge's
belief in each rating, not just its pick). A reply with no label token among the generated ones
falls back to the first position's alternatives (a local backend always includes the labels there);
a server without log-probabilities gives a one-hot distribution on the label it wrote.

Example:
    >>> import math
    >>> reply = JudgeReply("4", (TokenChoice("4", {"4": math.log(0.6), "3": math.log(0.2), "x": -1}),))
    >>> {k: round(v, 3) for k, v in label_distribution(reply, ("1", "2", "3", "4", "5")).items()}
    {'1': 0.0, '2': 0.0, '3': 0.25, '4': 0.75, '5': 0.0}
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from evalsuite.judges.backends import JudgeReply, TokenChoice
from evalsuite.registry import ScoreFailure

__all__ = ["label_distribution", "normalise_token", "weighted_rating"]

_PUNCTUATION = " \t\n\r.:,;!*\"'`()[]"


def normalise_token(token: str) -> str:
    """A token as compared with labels: lowercase, without spaces and light punctuation.

    >>> normalise_token(" Yes.")
    'yes'
    """
    return token.strip(_PUNCTUATION).lower()


def label_distribution(reply: JudgeReply, labels: Sequence[str]) -> dict[str, float] | ScoreFailure:
    """P(label) for each label (summing to 1), or a failure naming what the reply lacked."""
    wanted = {label.lower(): label for label in labels}
    position = next((choice for choice in reply.tokens if normalise_token(choice.token) in wanted), None)
    if position is None and reply.tokens and _label_mass(reply.tokens[0], wanted) > 0.0:
        position = reply.tokens[0]
    if position is not None:
        mass = _label_mass(position, wanted)
        if mass > 0.0:
            probabilities = dict.fromkeys(labels, 0.0)
            for token, logprob in position.top_logprobs.items():
                label = wanted.get(normalise_token(token))
                if label is not None:
                    probabilities[label] += math.exp(logprob) / mass
            return probabilities
        return {label: float(label == wanted[normalise_token(position.token)]) for label in labels}
    written = _first_label_in_text(reply.text, wanted)
    if written is not None:
        return {label: float(label == written) for label in labels}
    shown = ", ".join(labels)
    return ScoreFailure(
        f"the judge's reply has no answer among the labels ({shown}): off-format or a refusal", reply.text
    )


def weighted_rating(distribution: dict[str, float]) -> float:
    """G-Eval's probability-weighted score: the sum of p(k)·k over the ratings.

    >>> weighted_rating({"1": 0.5, "2": 0.0, "3": 0.5})
    2.0
    """
    return float(sum(probability * int(label) for label, probability in distribution.items()))


def _label_mass(choice: TokenChoice, wanted: dict[str, str]) -> float:
    return sum(math.exp(lp) for token, lp in choice.top_logprobs.items() if normalise_token(token) in wanted)


_LEADING_WORD = re.compile(r"^\W*([A-Za-z]+|\d)")
_NAMED_ANSWER = re.compile(
    r"\b(?:rating|answer|label|verdict|score|choice)\W{0,3}(?:is\W+)?([A-Za-z]+|\d)", re.I
)


def _first_label_in_text(text: str, wanted: dict[str, str]) -> str | None:
    """The label a reply without log-probabilities gives: its first word ("Yes, because ...") or the
    word after "rating", "answer", "label", "verdict", "score" or "choice" ("Rating: 4")."""
    for match in (_LEADING_WORD.match(text), *_NAMED_ANSWER.finditer(text)):
        if match is not None and match.group(1).lower() in wanted:
            return wanted[match.group(1).lower()]
    return None
