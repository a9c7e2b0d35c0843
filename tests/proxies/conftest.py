"""Synthetic judge data with known structure, and small result files with manifests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from proxies.features import FeatureTable

Maker = Callable[..., tuple[FeatureTable, np.ndarray]]


def feature_table(values: np.ndarray, *, prefix: str = "r", start: int = 0) -> FeatureTable:
    names = tuple(f"m_{i}" for i in range(values.shape[1]))
    ids = tuple(f"{prefix}{start + i}" for i in range(values.shape[0]))
    return FeatureTable(ids, names, values)


@pytest.fixture
def make_table() -> Callable[..., FeatureTable]:
    """Builds a FeatureTable with columns m_0, m_1, ... and ids r0, r1, ..."""
    return feature_table


@pytest.fixture
def make_binary() -> Maker:
    """Labels drawn from a logistic model on three features (the third is noise): P(1) = σ(2·x0 − x1)."""

    def make(n: int, seed: int, *, start: int = 0) -> tuple[FeatureTable, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 3))
        probability = 1.0 / (1.0 + np.exp(-(2.0 * x[:, 0] - x[:, 1])))
        labels = (rng.random(n) < probability).astype(int)
        return feature_table(x, start=start), labels

    return make


@pytest.fixture
def make_continuous() -> Maker:
    """y = 2·x0 − x1 + noise whose size grows with |x2| (so confidence must vary by record)."""

    def make(n: int, seed: int, *, start: int = 0) -> tuple[FeatureTable, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 3))
        y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(size=n) * (0.2 + 0.8 * np.abs(x[:, 2]))
        return feature_table(x, start=start), y

    return make


class FakeRuntime:
    """Deterministic 'embeddings' without model weights: counts of a few letters in each text."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def sentence_embeddings(self, model: str, texts: Sequence[str]) -> np.ndarray:
        self.calls.append((model, len(texts)))
        return np.array(
            [[text.count(letter) + 0.5 for letter in "aeiost"] for text in texts], dtype=np.float32
        )


@pytest.fixture
def fake_runtime() -> FakeRuntime:
    return FakeRuntime()
