"""Cosine similarity of sentence embeddings (sentence-transformers pooling) of prediction and references."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from metrics.base import Metric, Scores, register_metric

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two vectors (0 when either is zero)."""
    return float(torch.nn.functional.cosine_similarity(a.unsqueeze(0), b.unsqueeze(0)).item())


@register_metric("embedding_similarity")
class EmbeddingSimilarity(Metric):
    """Cosine between the prediction's sentence embedding and its closest reference's, in [-1, 1].

    Uses the same loaded encoder as BERTScore (default ``minilm``), pooled as its
    sentence-transformers config says. Higher is better.

    >>> EmbeddingSimilarity().columns
    ['embedding_similarity_cosine']
    """

    fields = ("prediction", "references")
    score_names = ("cosine",)
    description = "Cosine of sentence embeddings of the prediction and its closest reference."
    citation = "Reimers & Gurevych, Sentence-BERT, EMNLP 2019."

    def __init__(self, *, model: str = "minilm") -> None:
        super().__init__(model=model)
        self.model = model

    def models(self) -> list[str]:
        return [self.model]

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        texts = sorted({text for record in records for text in (record["prediction"], *record["references"])})
        embeddings = dict(zip(texts, rt.sentence_embeddings(self.model, texts), strict=True))
        return {
            "cosine": [
                max(
                    cosine_similarity(embeddings[record["prediction"]], embeddings[ref])
                    for ref in record["references"]
                )
                for record in records
            ]
        }
