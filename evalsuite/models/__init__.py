"""Models evalsuite ships inside its own package (weights, tokenizer and model card per folder)."""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent


def nli_minilm_path() -> Path:
    """Folder of the embedded ``nli-minilm`` cross-encoder (see its MODEL_CARD.md)."""
    return MODELS_DIR / "nli-minilm"
