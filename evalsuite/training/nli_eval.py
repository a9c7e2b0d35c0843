"""Evaluate an NLI model on labelled pairs: accuracy, per-class precision/recall, confusion, calibration.

Used by ``evalsuite nli-eval FILE.jsonl --model PRESET`` and for the embedded model's card.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.calibration import top_label_calibration_error
from evalsuite.errors import InputError
from evalsuite.runtime.nli import NLI_LABELS


@dataclass
class NLIReport:
    """What an NLI model gets right on a labelled set, and how well its confidence is calibrated."""

    model: str
    pairs: int
    accuracy: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]  # rows: gold label, columns: predicted label (NLI_LABELS order)
    expected_calibration_error: float
    entailment_vs_contradiction: dict[str, float] = field(default_factory=dict)
    pairs_per_second: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "labels": list(NLI_LABELS)}


def read_nli_pairs(path: str | Path, limit: int | None = None) -> tuple[list[tuple[str, str]], list[int]]:
    """``{"premise", "hypothesis", "label"}`` JSON lines → pairs and label indices (errors name the line)."""
    pairs: list[tuple[str, str]] = []
    labels: list[int] = []
    with Path(path).open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if limit is not None and len(pairs) >= limit:
                break
            location = f"{path}:{line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"malformed JSON: {error.msg}", location=location) from None
            if not isinstance(row, dict):
                raise InputError(f"expected a JSON object, got {type(row).__name__}", location=location)
            for name in ("premise", "hypothesis"):
                if not isinstance(row.get(name), str) or not row[name].strip():
                    raise InputError(
                        f"field {name!r} must be a non-empty string", location=location, field=name
                    )
            if row.get("label") not in NLI_LABELS:
                raise InputError(
                    f"field 'label' must be one of {', '.join(NLI_LABELS)}, got {row.get('label')!r}",
                    location=location,
                    field="label",
                )
            pairs.append((row["premise"], row["hypothesis"]))
            labels.append(NLI_LABELS.index(row["label"]))
    return pairs, labels


def nli_report(
    model: str, probabilities: np.ndarray, labels: Sequence[int], seconds: float = 0.0
) -> NLIReport:
    """All figures of the model card from predicted probabilities (columns in NLI_LABELS order)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    gold = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(NLI_LABELS)))
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=indices, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(NLI_LABELS)
    }
    # Factuality asks "entailed or contradicted?": on gold E/C pairs, compare only those two columns.
    entailment, contradiction = NLI_LABELS.index("entailment"), NLI_LABELS.index("contradiction")
    subset = np.isin(gold, [entailment, contradiction])
    two_way = np.where(
        probabilities[subset, entailment] >= probabilities[subset, contradiction], entailment, contradiction
    )
    return NLIReport(
        model=model,
        pairs=len(gold),
        accuracy=float((predicted == gold).mean()) if len(gold) else float("nan"),
        per_class=per_class,
        confusion=confusion_matrix(gold, predicted, labels=indices).tolist(),
        expected_calibration_error=top_label_calibration_error(probabilities, gold),
        entailment_vs_contradiction={
            "pairs": int(subset.sum()),
            "accuracy": float((two_way == gold[subset]).mean()) if subset.any() else float("nan"),
        },
        pairs_per_second=len(gold) / seconds if seconds else 0.0,
    )
