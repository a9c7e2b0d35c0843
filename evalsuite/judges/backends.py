"""What every judge backend takes and gives: chat requests in, replies (or failures) out.

A backend answers a list of :class:`JudgeRequest` with one :class:`JudgeReply` or
:class:`~evalsuite.registry.ScoreFailure` each, in order. A reply carries the text and, per generated
token, the chosen token and the most likely alternatives with their log-probabilities (the OpenAI
``top_logprobs`` shape), so one piece of code reads ratings from every backend.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from evalsuite.registry import ScoreFailure

__all__ = ["BackendStats", "JudgeBackend", "JudgeReply", "JudgeRequest", "TokenChoice"]


@dataclass(frozen=True)
class JudgeRequest:
    """One chat completion: ``messages`` as the OpenAI API takes them; ``labels`` are the answers the
    judge may give (a local backend reads their probabilities even when they are not its top tokens)."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int = 1
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenChoice:
    """One generated token: the token chosen and the top alternatives (token → log-probability)."""

    token: str
    top_logprobs: dict[str, float]


@dataclass(frozen=True)
class JudgeReply:
    text: str
    tokens: tuple[TokenChoice, ...] = ()  # empty when the server gives no log-probabilities
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class BackendStats:
    """What a backend did, counted across threads: requests sent (retries included), retries,
    requests that failed for good, and the tokens the server reported."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def to_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "failures": self.failures,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class JudgeBackend(Protocol):
    stats: BackendStats

    def complete(self, requests: Sequence[JudgeRequest]) -> list[JudgeReply | ScoreFailure]:
        """One reply or failure per request, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """What identifies the judge's answers (backend kind, model, server): for configs and manifests."""
        ...
