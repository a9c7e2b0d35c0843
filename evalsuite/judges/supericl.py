"""SuperICL: a small model's verdicts in the judge's prompt (Xu et al., 2023, "Small Models are
Valuable Plug-ins for Large Language Models").

For k labelled in-context examples and then the record, the prompt shows the input, the plug-in's
prediction with its confidence, and (for the examples) the gold label, in the paper's shape::

    <input>
    factuality Prediction: yes (Confidence: 0.87)
    Label: yes

The judge answers the record's ``Label:``; where it differs from the plug-in it *overrides* it, and
may be asked why ("Explanation for overriding the prediction:").

Two rules keep the examples honest. Their plug-in predictions are out-of-fold: a plug-in calibrated
on the examples predicts each example from a fit that did not see it (cross-fitting), and a plug-in
fitted elsewhere (a judge proxy) must not have been trained on them (:func:`check_out_of_fold`).
And confidences are calibrated: a score becomes a probability by Platt scaling fitted on the
examples' gold labels, so "Confidence: 0.87" means right 87% of the time on such examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.errors import ConfigError
from evalsuite.judges.templates import JudgeTemplate

__all__ = [
    "OVERRIDE_QUESTION",
    "ConfidenceCalibrator",
    "InContextExample",
    "PluginPrediction",
    "check_out_of_fold",
    "plugin_line",
    "select_examples",
    "supericl_prompt",
]

OVERRIDE_QUESTION = "Explanation for overriding the prediction:"
PLUGIN_NOTE = (
    "Each input below comes with the prediction of a small model ({plugin}) and its confidence. "
    "It is often right, but not always: give the correct label."
)


@dataclass(frozen=True)
class PluginPrediction:
    """A plug-in's label (one of the judge's labels) and its calibrated confidence in it."""

    label: str
    confidence: float

    @classmethod
    def from_probability(cls, probability: float, labels: Sequence[str]) -> PluginPrediction:
        """The first label when ``probability`` (of the first label) is at least 0.5, else the second."""
        first = probability >= 0.5
        return cls(labels[0] if first else labels[1], float(probability if first else 1.0 - probability))


@dataclass(frozen=True)
class InContextExample:
    record: Mapping[str, Any]
    label: str  # the gold label
    prediction: PluginPrediction  # out-of-fold


def plugin_line(plugin: str, prediction: PluginPrediction) -> str:
    """``factuality Prediction: yes (Confidence: 0.87)``."""
    return f"{plugin} Prediction: {prediction.label} (Confidence: {prediction.confidence:.2f})"


def supericl_prompt(
    template: JudgeTemplate,
    plugin: str,
    examples: Sequence[InContextExample],
    record: Mapping[str, Any],
    prediction: PluginPrediction,
) -> str:
    """The SuperICL prompt for one record: the question, the plug-in note, the examples, the record."""
    parts = [template.render_question(), PLUGIN_NOTE.format(plugin=plugin)]
    for example in examples:
        parts.append(
            f"{template.render_input(example.record)}\n"
            f"{plugin_line(plugin, example.prediction)}\nLabel: {example.label}"
        )
    parts.append(f"{template.render_input(record)}\n{plugin_line(plugin, prediction)}\nLabel:")
    return "\n\n".join(parts)


def select_examples(labels: Sequence[str], k: int, *, seed: int = 0) -> list[int]:
    """Positions of ``k`` in-context examples, as balanced over the labels as they allow, seeded,
    in a shuffled order (so no label always comes last)."""
    if k < 1:
        raise ConfigError(f"k (in-context examples) must be at least 1, got {k}")
    if len(labels) < k:
        raise ConfigError(f"k={k} in-context examples asked for, but the examples file has {len(labels)}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for position in rng.permutation(len(labels)).tolist():
        by_label.setdefault(labels[position], []).append(position)
    chosen: list[int] = []
    while len(chosen) < k:  # round-robin over the labels, in sorted order for stability
        for label in sorted(by_label):
            if by_label[label] and len(chosen) < k:
                chosen.append(by_label[label].pop())
    return [chosen[i] for i in rng.permutation(len(chosen)).tolist()]


class ConfidenceCalibrator:
    """Platt scaling of a plug-in score into P(first label), fitted on the examples' gold labels.

    :meth:`fit` returns each example's probability out of fold (from a fit on the other folds);
    :meth:`predict` uses the fit on all the examples, for records that are not examples.
    """

    def __init__(self, *, folds: int = 5, seed: int = 0) -> None:
        self.folds = folds
        self.seed = seed
        self._model: Any = None

    def fit(self, scores: Sequence[float], positive: Sequence[bool]) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        x = _column(scores)
        y = np.asarray(positive, dtype=bool)
        smallest = min(int(y.sum()), int((~y).sum()))
        if smallest < 2:
            raise ConfigError(
                "calibrating the plug-in needs at least 2 examples of each label, "
                f"got {int(y.sum())} and {int((~y).sum())}"
            )
        out_of_fold = np.empty(len(y))
        splits = StratifiedKFold(n_splits=min(self.folds, smallest), shuffle=True, random_state=self.seed)
        for train, held in splits.split(x, y):
            model = LogisticRegression().fit(x[train], y[train])
            out_of_fold[held] = model.predict_proba(x[held])[:, 1]
        self._model = LogisticRegression().fit(x, y)
        return out_of_fold

    def predict(self, scores: Sequence[float]) -> np.ndarray:
        if self._model is None:
            raise ConfigError("fit the calibrator on the examples before predicting")
        return np.asarray(self._model.predict_proba(_column(scores))[:, 1], dtype=np.float64)


def check_out_of_fold(example_ids: Iterable[str], trained_ids: Iterable[str], *, plugin: str) -> None:
    """Refuse in-context examples the plug-in was trained on: its predictions on them would be
    in-sample, more confident and more often right than on new records, and teach the judge to trust
    it too much."""
    seen = set(map(str, trained_ids))
    overlap = sorted(str(example) for example in example_ids if str(example) in seen)
    if overlap:
        shown = ", ".join(map(repr, overlap[:5])) + (" ..." if len(overlap) > 5 else "")
        raise ConfigError(
            f"{len(overlap)} in-context examples were in {plugin}'s training data ({shown}); their "
            "plug-in predictions would not be out-of-fold. Use examples it was not fitted on, or refit it "
            "without them"
        )


def _column(scores: Sequence[float]) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    if not np.isfinite(x).all():
        raise ConfigError("plug-in scores must be finite numbers to calibrate")
    return x
