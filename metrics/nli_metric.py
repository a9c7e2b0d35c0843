"""What every NLI-based metric shares: the NLI model option and probability look-ups by pair."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from metrics.base import Metric

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

Pair = tuple[str, str]  # (premise, hypothesis)
Probabilities = tuple[float, float, float]  # entailment, neutral, contradiction

DEFAULT_NLI_MODEL = "nli-minilm"


class NLIMetric(Metric):
    """Base of the metrics that judge (premise, hypothesis) pairs with an NLI cross-encoder.

    ``model`` is any NLI preset, local path or hub id (default: the embedded ``nli-minilm``);
    ``label_map`` names the classes of a model whose labels are not self-describing.
    """

    def __init__(
        self, *, model: str = DEFAULT_NLI_MODEL, label_map: Mapping[str, str] | None = None, **config: Any
    ) -> None:
        label_map = dict(label_map) if label_map else None
        super().__init__(model=model, label_map=label_map, **config)
        self.model = model
        self.label_map = label_map

    def models(self) -> list[str]:
        return [self.model]

    def probabilities(self, rt: Runtime, pairs: Iterable[Pair]) -> dict[Pair, Probabilities]:
        """Entailment, neutral and contradiction probabilities of each distinct pair.

        Callers hand over every pair of a whole batch of records at once, so the runtime batches
        them together; it scores each distinct pair once across metrics.
        """
        unique = list(dict.fromkeys(pairs))
        rows = rt.nli(self.model, unique, label_map=self.label_map).tolist()
        return {pair: (row[0], row[1], row[2]) for pair, row in zip(unique, rows, strict=True)}
