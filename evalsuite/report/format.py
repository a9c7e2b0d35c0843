"""Numbers as every report prints them, and as ``evalsuite compare`` prints them: one format each."""

from __future__ import annotations

from typing import Any

__all__ = ["difference", "interval", "number", "p_value"]


def _missing(value: Any) -> bool:
    return value is None or value != value


def number(value: Any, digits: int = 4) -> str:
    """``0.8123``; ``–`` for a missing value."""
    return "–" if _missing(value) else f"{float(value):.{digits}f}"


def difference(value: Any) -> str:
    """A signed difference: ``+0.0123``; ``–`` for a missing value."""
    return "–" if _missing(value) else f"{float(value):+.4f}"


def p_value(value: Any) -> str:
    """``0.0312``, ``1.2e-05``; ``–`` for a missing value."""
    return "–" if _missing(value) else f"{float(value):.3g}"


def interval(low: Any, high: Any, *, signed: bool = False) -> str:
    """``0.8012–0.8311`` (a mean's CI) or ``+0.0012 – +0.0311`` (a difference's CI, ``signed``)."""
    if _missing(low) or _missing(high):
        return "–"
    if signed:
        return f"{difference(low)} – {difference(high)}"
    return f"{number(low)}–{number(high)}"
