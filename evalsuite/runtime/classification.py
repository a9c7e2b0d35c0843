"""Text classifiers: label names in the model's own order, and how logits become probabilities.

Pure functions over a model config (``id2label``, ``problem_type``) and a logits tensor; they are
the one place that decides sigmoid or softmax, for the runtime and for metrics that name columns
from a config before any weights are loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

Activation = Literal["sigmoid", "softmax"]


def label_names(id2label: Mapping[int, str] | Mapping[str, str]) -> list[str]:
    """The label of each output, in output order (configs read from JSON may key by strings).

    >>> label_names({"1": "toxic", "0": "neutral"})
    ['neutral', 'toxic']
    """
    return [str(name) for _, name in sorted((int(index), name) for index, name in id2label.items())]


def config_labels(config: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """Label names (output order) and ``problem_type`` from a classifier's ``config.json`` contents.

    Read as transformers reads them: a config without ``id2label`` has ``num_labels`` (default 2)
    labels named ``LABEL_0``, ``LABEL_1``...

    >>> config_labels({"id2label": {"0": "neutral", "1": "toxic"}})
    (['neutral', 'toxic'], None)
    >>> config_labels({"problem_type": "multi_label_classification"})
    (['LABEL_0', 'LABEL_1'], 'multi_label_classification')
    """
    id2label = config.get("id2label")
    if id2label is None:
        id2label = {index: f"LABEL_{index}" for index in range(int(config.get("num_labels") or 2))}
    return label_names(id2label), config.get("problem_type")


def activation(problem_type: str | None) -> Activation:
    """Sigmoid per label for multi-label heads; softmax over labels for every other head.

    >>> activation("multi_label_classification"), activation(None)
    ('sigmoid', 'softmax')
    """
    return "sigmoid" if problem_type == "multi_label_classification" else "softmax"


def label_probabilities(logits: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """Probabilities ``[batch, labels]`` (float32) from a classification head's logits."""
    logits = logits.float()
    if activation(problem_type) == "sigmoid":
        return logits.sigmoid()
    return logits.softmax(dim=-1)


def score_name(label: str) -> str:
    """A label as a lowercase snake_case column suffix.

    >>> [score_name(label) for label in ("severe_toxic", "IdentityAttack", "Not Hate", "LABEL_0")]
    ['severe_toxic', 'identity_attack', 'not_hate', 'label_0']
    """
    split_camel = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(label))
    return re.sub(r"[^0-9a-z]+", "_", split_camel.lower()).strip("_")
