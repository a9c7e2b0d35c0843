"""The one error hierarchy of evalsuite.

Every error a user can trigger derives from :class:`EvalsuiteError`, so callers can catch one type.
"""

from __future__ import annotations


class EvalsuiteError(Exception):
    """Base class of every error raised by evalsuite on purpose."""


class ConfigError(EvalsuiteError, ValueError):
    """An invalid parameter: says what was expected and what was got."""


class UnknownMetricError(ConfigError, KeyError):
    """A metric name that is not registered; the message lists the close ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class InputError(EvalsuiteError, ValueError):
    """A bad input record: names the record (file:line or index), the field and the problem."""

    def __init__(self, message: str, *, location: str | None = None, field: str | None = None) -> None:
        self.location = location
        self.field = field
        self.reason = message
        super().__init__(f"{location}: {message}" if location else message)


class ModelUnavailableError(EvalsuiteError, RuntimeError):
    """A model that cannot be loaded here; the message names what to install or pass."""


class MissingDependencyError(EvalsuiteError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class ThresholdError(EvalsuiteError, AssertionError):
    """A score fell below (or above) the threshold a caller set, e.g. in CI."""


class ResumeError(EvalsuiteError, RuntimeError):
    """An existing partial output cannot be resumed by this command (other input or config)."""
