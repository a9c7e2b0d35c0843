"""Low-rank deltas: a tuned model shipped as factors on a base, rebuilt once into the model cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from evalsuite.errors import ConfigError
from evalsuite.runtime.delta import DELTA_WEIGHTS, extract, materialise, materialised
from tests.evalsuite.conftest import build_tiny_cross_encoder

LABELS = ("entailment", "neutral", "contradiction")


def tuned_copy(base: Path, out: Path, rank: int) -> dict[str, torch.Tensor]:
    """``base`` with a rank-``rank`` change to every matrix and a new head and LayerNorms."""
    build_tiny_cross_encoder(out, LABELS)
    weights = load_file(str(base / "model.safetensors"))
    generator = torch.Generator().manual_seed(3)
    tuned = {}
    for name, weight in weights.items():
        if weight.dim() == 2 and "classifier" not in name:
            rows, columns = weight.shape
            change = torch.randn(rows, rank, generator=generator) @ torch.randn(
                rank, columns, generator=generator
            )
            tuned[name] = weight + 0.01 * change
        else:
            tuned[name] = weight + 0.05 * torch.randn(weight.shape, generator=generator)
    save_file({name: w.contiguous() for name, w in tuned.items()}, str(out / "model.safetensors"))
    return tuned


def test_a_delta_of_enough_rank_rebuilds_the_tuned_weights(tmp_path: Path) -> None:
    base = build_tiny_cross_encoder(tmp_path / "base", LABELS)
    tuned = tuned_copy(base, tmp_path / "tuned", rank=2)
    (tmp_path / "tuned" / "calibration.json").write_text('{"temperature": 1.5}')
    info = extract(base, tmp_path / "tuned", tmp_path / "delta", rank=2, base_name="tiny")
    assert info["base"] == "tiny"
    stored = load_file(str(tmp_path / "delta" / DELTA_WEIGHTS))
    # Matrices as two factors, the head and vectors in full.
    assert any(name.endswith(".up") for name in stored)
    assert all(not name.startswith("classifier") or name.endswith(".full") for name in stored)

    rebuilt = load_file(
        str(materialise(base, tmp_path / "delta", tmp_path / "rebuilt") / "model.safetensors")
    )
    for name, weight in tuned.items():
        # fp16 storage: errors of a few fp16 ulps of the largest entries.
        tolerance = 8 * torch.finfo(torch.float16).eps * float(weight.abs().max())
        assert torch.allclose(rebuilt[name].float(), weight, atol=tolerance, rtol=0), name
    assert (tmp_path / "rebuilt" / "calibration.json").read_text() == '{"temperature": 1.5}'
    assert (tmp_path / "rebuilt" / "tokenizer.json").is_file()


def test_a_delta_refuses_a_base_it_was_not_made_for(tmp_path: Path) -> None:
    base = build_tiny_cross_encoder(tmp_path / "base", LABELS)
    tuned_copy(base, tmp_path / "tuned", rank=1)
    extract(base, tmp_path / "tuned", tmp_path / "delta", rank=1, base_name="tiny")
    other = build_tiny_cross_encoder(tmp_path / "other", LABELS, seed=9)
    with pytest.raises(ConfigError, match="was made for tiny weights"):
        materialise(other, tmp_path / "delta", tmp_path / "rebuilt")


def test_materialised_writes_the_folder_once_into_the_model_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALSUITE_MODELS_DIR", str(tmp_path / "cache"))
    base = build_tiny_cross_encoder(tmp_path / "base", LABELS)
    tuned_copy(base, tmp_path / "tuned", rank=1)
    extract(base, tmp_path / "tuned", tmp_path / "delta", rank=1, base_name="tiny")
    first = materialised(base, tmp_path / "delta", "tiny-tuned")
    assert first.parent == tmp_path / "cache"
    written = (first / "model.safetensors").stat().st_mtime_ns
    assert materialised(base, tmp_path / "delta", "tiny-tuned") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == written  # not rebuilt
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]  # no staging left behind


def test_a_delta_needs_the_bases_vocabulary(tmp_path: Path) -> None:
    import json

    base = build_tiny_cross_encoder(tmp_path / "base", LABELS)
    tuned_copy(base, tmp_path / "tuned", rank=1)
    tokenizer = json.loads((tmp_path / "tuned" / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["[unused0]"] = len(tokenizer["model"]["vocab"])
    (tmp_path / "tuned" / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ConfigError, match="another vocabulary"):
        extract(base, tmp_path / "tuned", tmp_path / "delta", rank=1, base_name="tiny")
