"""The embedded ``factcheck-minilm`` checker: shipped as a delta on nli-minilm, rebuilt on first use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import evalsuite.models
from evalsuite.calibration import Calibration
from evalsuite.runtime import Runtime, resolve_model

pytestmark = pytest.mark.model

DOCUMENT = "The bridge opened in 1932. It was painted red in 1990 and carries four lanes."


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime(device="cpu")


def test_the_package_ships_a_small_delta_with_its_card_and_calibration() -> None:
    shipped = evalsuite.models.factcheck_minilm_delta()
    assert shipped is not None
    assert not (shipped / "model.safetensors").exists()  # no second copy of the encoder
    assert sum(file.stat().st_size for file in shipped.iterdir()) < 10 * 2**20
    assert (shipped / "MODEL_CARD.md").is_file()
    assert Calibration.read(shipped) is not None
    assert json.loads((shipped / "delta.json").read_text())["base"] == "nli-minilm"


def test_it_resolves_to_a_full_folder_with_the_calibration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EVALSUITE_MODELS_DIR", str(tmp_path))
    resolved = resolve_model("factcheck-minilm")
    assert resolved.source == "packaged"
    assert resolved.path.parent == tmp_path
    assert (resolved.path / "model.safetensors").is_file()
    assert Calibration.read(resolved.path) == Calibration.read(evalsuite.models.factcheck_minilm_delta())


def test_support_is_the_calibrated_entailment_of_the_rebuilt_model(runtime: Runtime) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pairs = [(DOCUMENT, "The bridge opened in 1932."), (DOCUMENT, "The bridge is blue.")]
    path = resolve_model("factcheck-minilm").path
    calibration = Calibration.read(path)
    assert calibration is not None
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    inputs = tokenizer([p for p, _ in pairs], [c for _, c in pairs], return_tensors="pt", padding=True)
    with torch.no_grad():
        entailment = (model(**inputs).logits / calibration.temperature).softmax(-1)[:, 0].numpy()
    expected = calibration.supported(entailment)
    support = runtime.support("factcheck-minilm", pairs).numpy()
    assert support == pytest.approx(expected, abs=1e-5)
    assert support[0] > calibration.threshold > support[1]  # an obvious pair each way
