"""How long to wait before retrying an HTTP request: one policy for the service client and the judges.

A server's ``Retry-After`` (seconds or an HTTP date) is honoured up to a cap; otherwise the wait is
"full jitter" exponential back-off, so clients refused together do not all come back at once.
"""

from __future__ import annotations

import email.utils
import random
import time

__all__ = ["retry_after_seconds", "retry_delay"]


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date); None when absent.

    >>> retry_after_seconds("2"), retry_after_seconds(None), retry_after_seconds("soon")
    (2.0, None, None)
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_delay(attempt: int, backoff: float, retry_after: str | None, cap: float) -> float:
    """The wait before retry number ``attempt + 1``: the server's ``Retry-After`` when it gives one,
    else uniform in [0, ``backoff`` · 2^attempt]; never more than ``cap`` seconds."""
    told = retry_after_seconds(retry_after)
    if told is not None:
        return min(told, cap)
    return random.uniform(0, min(cap, backoff * 2**attempt))
