"""Locks for the model calls of one device: what a batcher needs of one, and a fair one.

:class:`~evalsuite.runtime.microbatch.MicroBatcher` holds its lock for each turn; batchers sharing
one :class:`FairLock` take turns in the order they asked.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from types import TracebackType
from typing import Protocol

__all__ = ["FairLock", "Lock"]


class Lock(Protocol):
    """What a batcher needs of its lock: :class:`threading.Lock` and :class:`FairLock` both fit."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


class FairLock:
    """A lock granted in the order it was asked for.

    :class:`threading.Lock` promises no order: a thread that releases it and asks again at once
    (a batcher between two parts of a long request) nearly always wins it back, so the threads
    waiting for it starve. This one queues them, so one device's users take turns.

    >>> lock = FairLock()
    >>> with lock:
    ...     lock.locked()
    True
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock once every earlier caller has had it; ``False`` after ``timeout`` seconds."""
        with self._condition:
            if not self._held and not self._waiting:
                self._held = True
                return True
            if not blocking:
                return False
            turn = object()
            self._waiting.append(turn)
            deadline = None if timeout < 0 else time.monotonic() + timeout
            try:
                while self._held or self._waiting[0] is not turn:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._condition.wait(remaining)
                self._held = True
                return True
            finally:
                self._waiting.remove(turn)
                self._condition.notify_all()  # the next in line may be free to go now

    def release(self) -> None:
        with self._condition:
            if not self._held:
                raise RuntimeError("release of an unlocked FairLock")
            self._held = False
            self._condition.notify_all()

    def locked(self) -> bool:
        return self._held

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
