"""Natural-language inference: (premise, hypothesis) pairs → probabilities in one fixed label order.

Whatever order a model's classifier head uses, callers get columns (entailment, neutral,
contradiction), read from the model's ``id2label``. Two-class heads are mapped explicitly (never
guessed) and unnamed labels (``LABEL_0``...) need a ``label_map`` from the caller.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

from evalsuite.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from evalsuite.runtime.models import LoadedModel

NLI_LABELS = ("entailment", "neutral", "contradiction")

_SYNONYMS = {
    "entailment": "entailment",
    "entails": "entailment",
    "entailed": "entailment",
    "neutral": "neutral",
    "contradiction": "contradiction",
    "contradicts": "contradiction",
    "contradictory": "contradiction",
}
# Two-class heads say "entailed or not": the "not" side is neither known neutral nor known
# contradiction, so it is reported as neutral and contradiction stays 0. Written out, not inferred.
_TWO_CLASS = {
    frozenset({"entailment", "not_entailment"}): {"entailment": "entailment", "not_entailment": "neutral"},
    frozenset({"entailment", "non_entailment"}): {"entailment": "entailment", "non_entailment": "neutral"},
}


def label_columns(id2label: Mapping[int, str], label_map: Mapping[str, str] | None = None) -> list[int]:
    """For each model output index, the column (0 entailment, 1 neutral, 2 contradiction) it feeds.

    >>> label_columns({0: "contradiction", 1: "entailment", 2: "neutral"})
    [2, 0, 1]
    """
    names = {int(index): str(name) for index, name in id2label.items()}
    normalised = {index: normalise_label(name) for index, name in names.items()}
    if label_map is not None:
        mapping = {normalise_label(key): normalise_label(value) for key, value in label_map.items()}
    elif frozenset(normalised.values()) in _TWO_CLASS:
        mapping = _TWO_CLASS[frozenset(normalised.values())]
    else:
        mapping = {name: _SYNONYMS[name] for name in normalised.values() if name in _SYNONYMS}
    columns = []
    for index in sorted(normalised):
        target = mapping.get(normalised[index])
        if target not in NLI_LABELS:
            raise ConfigError(
                f"cannot tell which NLI class the model's label {names[index]!r} (output {index}) is; "
                f"its labels are {sorted(names.values())}. Pass label_map={{<label>: 'entailment'|'neutral'|'contradiction'}}"
            )
        columns.append(NLI_LABELS.index(target))
    if len(set(columns)) != len(columns):
        raise ConfigError(f"the model's labels {sorted(names.values())} name the same NLI class twice")
    return columns


def normalise_label(label: str) -> str:
    """A label name compared case-, space- and dash-blind.

    >>> normalise_label("Not Entailment")
    'not_entailment'
    """
    return str(label).strip().lower().replace("-", "_").replace(" ", "_")


def nli_probabilities(
    classifier: LoadedModel, columns: Sequence[int], batch: Sequence[Sequence[tuple[int, int]]]
) -> list[torch.Tensor]:
    """One batch of encoded pairs → a row of (entailment, neutral, contradiction) probabilities each.

    A calibration beside the model divides the logits by its temperature first: the argmax stays,
    the confidences match the accuracy it was fitted on.
    """
    import torch

    from evalsuite.runtime.encoding import classify

    logits = classify(classifier, batch).float() / calibrated_temperature(classifier)
    probabilities = logits.softmax(dim=-1).cpu()
    mapped = torch.zeros((len(batch), len(NLI_LABELS)))
    for output, column in enumerate(columns):
        mapped[:, column] += probabilities[:, output]
    return list(mapped)


def calibrated_temperature(model: LoadedModel) -> float:
    """The temperature that divides a classifier's logits (1.0 for a model without a calibration)."""
    return model.calibration.temperature if model.calibration is not None else 1.0


Pair = tuple[str, str]


class PairMemo:
    """The most recent ``size`` NLI rows by (scope, premise, hypothesis), shared by threads.

    The metrics of one run often need the same pairs (samples against samples, a prediction that
    is also a sample): each is scored once, then read from here.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: OrderedDict[tuple[Hashable, ...], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, scope: tuple[Hashable, ...], pairs: Sequence[Pair]) -> dict[Pair, torch.Tensor]:
        """The rows already known among ``pairs`` (each marked as recently used)."""
        found: dict[Pair, torch.Tensor] = {}
        with self._lock:
            for pair in dict.fromkeys(pairs):
                row = self._rows.get((*scope, *pair))
                if row is not None:
                    self._rows.move_to_end((*scope, *pair))
                    found[pair] = row
        return found

    def store(self, scope: tuple[Hashable, ...], pairs: Sequence[Pair], rows: Sequence[torch.Tensor]) -> None:
        """Remember ``rows`` of ``pairs``, forgetting the least recently used past ``size``."""
        with self._lock:
            for pair, row in zip(pairs, rows, strict=True):
                self._rows[(*scope, *pair)] = row
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
