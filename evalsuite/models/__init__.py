"""Models evalsuite ships inside its own package (weights, tokenizer and model card per folder)."""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent


def nli_minilm_path() -> Path:
    """Folder of the embedded ``nli-minilm`` cross-encoder (see its MODEL_CARD.md)."""
    return MODELS_DIR / "nli-minilm"


def factcheck_minilm_delta() -> Path | None:
    """The shipped low-rank delta of ``factcheck-minilm`` over ``nli-minilm`` (None while absent)."""
    from evalsuite.runtime.delta import DELTA_WEIGHTS

    folder = MODELS_DIR / "factcheck-minilm"
    return folder if (folder / DELTA_WEIGHTS).is_file() else None


def factcheck_minilm_path() -> Path | None:
    """The embedded ``factcheck-minilm`` claim checker as a model folder (see its MODEL_CARD.md).

    The package ships it as a delta on ``nli-minilm`` (a few MB instead of a second 45 MB copy);
    the full folder is built once, on first use, in the converted-models cache.
    """
    from evalsuite.runtime.delta import materialised

    delta = factcheck_minilm_delta()
    return None if delta is None else materialised(nli_minilm_path(), delta, "factcheck-minilm")


def safety_minilm_delta() -> Path | None:
    """The shipped low-rank delta of ``safety-minilm`` over ``nli-minilm`` (None while absent)."""
    from evalsuite.runtime.delta import DELTA_WEIGHTS

    folder = MODELS_DIR / "safety-minilm"
    return folder if (folder / DELTA_WEIGHTS).is_file() else None


def safety_minilm_path() -> Path | None:
    """The embedded ``safety-minilm`` classifier as a model folder (see its MODEL_CARD.md), built once
    from its delta on first use, as ``factcheck-minilm`` is."""
    from evalsuite.runtime.delta import materialised

    delta = safety_minilm_delta()
    return None if delta is None else materialised(nli_minilm_path(), delta, "safety-minilm")
