"""Parameter checks with one message format: ``<name> must be <expected>, got <value>``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from evalsuite.errors import ConfigError


def invalid(name: str, expected: str, got: Any) -> ConfigError:
    """The error for parameter ``name``: what was expected, what was got."""
    return ConfigError(f"{name} must be {expected}, got {got!r}")


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` when it is one of ``choices``."""
    if value not in choices:
        raise invalid(name, either(choices), value)
    return value


def either(choices: Collection[Any]) -> str:
    """``'a' or 'b'``; ``one of 'a', 'b' or 'c'``."""
    quoted = [repr(choice) for choice in choices]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return listed if len(quoted) <= 2 else f"one of {listed}"


def check_positive_int(name: str, value: Any) -> int:
    """``value`` when it is an integer >= 1 (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(name, "a positive integer", value)
    return value


def check_positive(name: str, value: Any) -> float:
    """``value`` when it is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise invalid(name, "a positive number", value)
    return float(value)
