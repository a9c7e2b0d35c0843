"""The only layer that knows devices, dtypes, batching and model loading.

Importing this package does not import torch; the first model call does.
"""

from evalsuite.runtime.core import Runtime, RuntimeStats, TruncationWarning
from evalsuite.runtime.models import PRESETS, ModelPreset, clear_model_cache, resolve_model

__all__ = [
    "PRESETS",
    "ModelPreset",
    "Runtime",
    "RuntimeStats",
    "TruncationWarning",
    "clear_model_cache",
    "resolve_model",
]
