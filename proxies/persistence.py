"""Saving and loading judge proxies without executing code from the file.

A proxy file is a zip archive of ``meta.json`` (format, library versions, the predictor's parameters,
classes, fit report and feature schema) and ``model.skops`` (the fitted scikit-learn and MAPIE
objects in skops' format). Loading refuses other versions of scikit-learn or MAPIE and any type
outside :data:`ALLOWED_TYPES`; no pickle is read at any point. The format and its safety checks live
in :mod:`proxies.archive`; what a predictor writes there, in :mod:`proxies.predictor`. This module
depends on both, and neither depends on it.

Example:
    >>> proxy.save("judge.proxy")  # doctest: +SKIP
    >>> JudgePredictor.load("judge.proxy").predict("run.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib

from proxies.archive import (
    ALLOWED_TYPES,
    FORMAT,
    FORMAT_VERSION,
    META_MEMBER,
    MODEL_MEMBER,
    UnsafeModelFileError,
    read_meta,
)
from proxies.predictor import JudgePredictor

__all__ = [
    "ALLOWED_TYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "META_MEMBER",
    "MODEL_MEMBER",
    "UnsafeModelFileError",
    "load_predictor",
    "read_meta",
    "save_predictor",
]


def save_predictor(predictor: JudgePredictor, path: str | os.PathLike[str]) -> pathlib.Path:
    """Write a fitted predictor to ``path`` (a zip archive; see the module docstring)."""
    return predictor.save(path)


def load_predictor(path: str | os.PathLike[str]) -> JudgePredictor:
    """Read a proxy written by :func:`save_predictor`; no code from the file is executed.

    Raises :class:`UnsafeModelFileError` for a file evalsuite did not write (not a zip archive,
    missing members, a pickle) or one that would build a type outside :data:`ALLOWED_TYPES`, and
    :class:`~evalsuite.errors.ConfigError` when it was written with another scikit-learn or MAPIE version.
    """
    return JudgePredictor.load(path)
