"""Natural-language inference: (premise, hypothesis) pairs → probabilities in one fixed label order.

Whatever order a model's classifier head uses, callers get columns (entailment, neutral,
contradiction), read from the model's ``id2label``. Two-class heads are mapped explicitly (never
guessed) and unnamed labels (``LABEL_0``...) need a ``label_map`` from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping

from evalsuite.errors import ConfigError

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
    normalised = {index: _normalise(name) for index, name in names.items()}
    if label_map is not None:
        mapping = {_normalise(key): _normalise(value) for key, value in label_map.items()}
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


def _normalise(label: str) -> str:
    return str(label).strip().lower().replace("-", "_").replace(" ", "_")
