"""Where the public evaluation data lives: a path the user gives, never a copy in the project.

Benchmarks, baseline scripts and data-backed tests read the shared datasets (STS-B, SummEval, NLI...)
from ``--data DIR`` or the ``EVALSUITE_DATA`` environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from evalsuite.errors import ConfigError

DATA_ENV = "EVALSUITE_DATA"


def resolve_data_dir(path: str | os.PathLike[str] | None = None, *, needs: Iterable[str] = ()) -> Path:
    """The data directory from ``path`` or ``$EVALSUITE_DATA``, checked to hold the ``needs`` files.

    >>> resolve_data_dir("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    evalsuite.errors.ConfigError: data directory '/nonexistent' does not exist
    """
    chosen = path if path is not None else os.environ.get(DATA_ENV)
    if not chosen:
        raise ConfigError(f"no data directory: pass --data DIR or set {DATA_ENV}")
    root = Path(chosen).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data directory {str(root)!r} does not exist")
    missing = [str(root / name) for name in needs if not (root / name).is_file()]
    if missing:
        raise ConfigError(f"data file(s) not found: {', '.join(missing)}")
    return root
