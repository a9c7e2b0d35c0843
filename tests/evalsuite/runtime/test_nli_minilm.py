"""The embedded ``nli-minilm`` cross-encoder, loaded for real from inside the package."""

from __future__ import annotations

import pytest

from evalsuite.runtime import Runtime, resolve_model
from evalsuite.runtime.nli import NLI_LABELS

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime(device="cpu")


def test_it_is_packaged_with_its_model_card() -> None:
    resolved = resolve_model("nli-minilm")
    assert resolved.source == "packaged"
    assert (resolved.path / "MODEL_CARD.md").is_file()
    assert sum(file.stat().st_size for file in resolved.path.iterdir()) < 50 * 2**20


@pytest.mark.parametrize(
    ("hypothesis", "expected"),
    [("A person sleeps.", "entailment"), ("A man is running a marathon.", "contradiction")],
)
def test_obvious_pairs(runtime: Runtime, hypothesis: str, expected: str) -> None:
    probabilities = runtime.nli("nli-minilm", [("A man is sleeping.", hypothesis)])[0]
    assert NLI_LABELS[int(probabilities.argmax())] == expected
    assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-6)
