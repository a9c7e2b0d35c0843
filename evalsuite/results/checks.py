"""Argument checks shared by the results modules, and the error for an unknown column."""

from __future__ import annotations

from collections.abc import Sequence

from evalsuite.errors import ConfigError

__all__ = ["UnknownColumnError", "check_columns", "check_confidence"]


class UnknownColumnError(ConfigError, KeyError):
    """A column name that is not in the results; the message lists the available ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


def check_confidence(confidence: float) -> None:
    """Raise :class:`ConfigError` unless ``0 < confidence < 1``."""
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def check_columns(names: Sequence[str], available: Sequence[str], *, what: str) -> None:
    """Raise :class:`UnknownColumnError` naming every one of ``names`` not in ``available``."""
    unknown = [name for name in names if name not in available]
    if unknown:
        listed = ", ".join(map(repr, available)) or "none"
        raise UnknownColumnError(f"unknown {what} {', '.join(map(repr, unknown))}; available: {listed}")
