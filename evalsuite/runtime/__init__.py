"""The only layer that knows devices, dtypes, batching and model loading.

Importing this package, building a :class:`Runtime` and describing it or its models import no
torch: the device and dtype are resolved, and torch imported, on the first model call.
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
