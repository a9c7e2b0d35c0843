"""Micro-batching: concurrent small requests for one model merged into one model batch.

Many threads ``submit`` a few items each; one worker thread per batcher gathers the requests that
arrive within ``max_wait_ms`` of the first one (while they fit a cost budget and an item count),
runs them as one call of ``run``, and hands each caller its own slice of the outputs, in order.
Requests are never split: one larger than the budget runs alone. When a merged batch fails, each
of its requests is run again alone, so only the request that causes the failure gets the error.

    batcher = MicroBatcher(lambda texts: model(texts), cost=lambda text: len(text) // 4)
    scores = batcher.submit(["a text", "another"], timeout=30)   # from any thread
    batcher.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from evalsuite.errors import ConfigError, EvalsuiteError

__all__ = ["MicroBatchStats", "MicroBatcher", "MicroBatcherClosedError"]

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger(__name__)


class MicroBatcherClosedError(EvalsuiteError, RuntimeError):
    """Work submitted to a batcher that was closed."""


@dataclass
class MicroBatchStats:
    """Counters of one batcher (written by its worker thread only, except ``requests``)."""

    requests: int = 0  # requests accepted by submit/enqueue
    items: int = 0  # items passed to run, retries included
    calls: int = 0  # calls of run (model batches), retries included
    retries: int = 0  # requests run again alone after their merged batch failed
    failures: int = 0  # requests that got an error from run


@dataclass(eq=False)
class _Request(Generic[T, R]):
    items: list[T]
    cost: int
    future: Future[list[R]]
    enqueued_at: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[T, R]):
    """Merges concurrent requests into batches of ``run``, one worker thread per batcher.

    ``run`` maps a list of items to one output per item. A batch closes when the next waiting
    request would take it over ``token_budget`` (the sum of ``cost`` over its items) or
    ``max_items``, or ``max_wait_ms`` after its first request arrived. ``lock``, when given, is
    held around every call of ``run`` (one lock shared by the batchers of one device keeps their
    model calls apart). ``on_batch(items, cost)`` is told about every call, e.g. for telemetry.

    >>> batcher = MicroBatcher(lambda xs: [x * 2 for x in xs], max_wait_ms=1)
    >>> batcher.submit([1, 2, 3])
    [2, 4, 6]
    >>> batcher.close()
    """

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        cost: Callable[[T], int] = lambda _: 1,
        token_budget: int = 16_384,
        max_items: int = 256,
        max_wait_ms: float = 5.0,
        lock: threading.Lock | None = None,
        name: str = "batcher",
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        if token_budget < 1 or max_items < 1:
            raise ConfigError(
                f"token_budget and max_items must be positive integers, got {token_budget} and {max_items}"
            )
        if max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be zero or more, got {max_wait_ms}")
        self.name = name
        self.stats = MicroBatchStats()
        self._run = run
        self._cost = cost
        self._token_budget = token_budget
        self._max_items = max_items
        self._max_wait_s = max_wait_ms / 1000
        self._lock = lock
        self._on_batch = on_batch
        self._queue: deque[_Request[T, R]] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name=f"microbatch-{name}", daemon=True)
        self._worker.start()

    # -- callers --------------------------------------------------------------------------------
    def enqueue(self, items: Sequence[T]) -> Future[list[R]]:
        """Queue ``items`` and return at once a future of their outputs, in order (thread-safe).

        Cancelling the future before its batch starts withdraws the request.
        """
        request: _Request[T, R] = _Request(list(items), 0, Future())
        request.cost = sum(max(0, self._cost(item)) for item in request.items)
        with self._condition:
            if self._closed:
                raise MicroBatcherClosedError(f"micro-batcher {self.name!r} is closed")
            self.stats.requests += 1
            if not request.items:
                request.future.set_result([])
                return request.future
            self._queue.append(request)
            self._condition.notify()
        return request.future

    def submit(self, items: Sequence[T], timeout: float | None = None) -> list[R]:
        """The outputs of ``run`` for ``items``, in order; blocks until they are ready (thread-safe).

        Raises :class:`TimeoutError` after ``timeout`` seconds (a request still waiting is
        withdrawn), or the error ``run`` raised for these items.
        """
        future = self.enqueue(items)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"micro-batcher {self.name!r}: no result within {timeout} s") from None

    @property
    def pending(self) -> int:
        """Requests waiting for a batch (not counting the batch running now)."""
        with self._condition:
            return len(self._queue)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what is queued, and stop the worker; closing twice is harmless.

        Requests still queued when ``timeout`` runs out get :class:`MicroBatcherClosedError`.
        """
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._worker.join(timeout)
        with self._condition:
            abandoned = list(self._queue)
            self._queue.clear()
        for request in abandoned:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(
                    MicroBatcherClosedError(f"micro-batcher {self.name!r} closed before running the request")
                )

    def __enter__(self) -> MicroBatcher[T, R]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- worker ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run_batch(batch)

    def _next_batch(self) -> list[_Request[T, R]] | None:
        """The requests of the next batch; ``None`` once closed and drained."""
        with self._condition:
            while not self._queue:
                if self._closed:
                    return None
                self._condition.wait()
            # Counted from the first request's arrival: under load the queue has waited long
            # enough already, and the batch leaves at once.
            deadline = self._queue[0].enqueued_at + self._max_wait_s
            batch: list[_Request[T, R]] = []
            cost = items = 0
            while True:
                while self._queue and (not batch or self._fits(self._queue[0], cost, items)):
                    request = self._queue.popleft()
                    if not request.future.set_running_or_notify_cancel():
                        continue  # its caller gave up waiting
                    batch.append(request)
                    cost += request.cost
                    items += len(request.items)
                full = bool(self._queue) or cost >= self._token_budget or items >= self._max_items
                remaining = deadline - time.monotonic()
                if full or self._closed or remaining <= 0 or not batch:
                    return batch
                self._condition.wait(remaining)

    def _fits(self, request: _Request[T, R], cost: int, items: int) -> bool:
        return cost + request.cost <= self._token_budget and items + len(request.items) <= self._max_items

    def _run_batch(self, batch: list[_Request[T, R]]) -> None:
        try:
            items = [item for request in batch for item in request.items]
            outputs = self._call(items, sum(request.cost for request in batch))
        except Exception as error:  # noqa: BLE001 - the error reaches the callers through their futures
            if len(batch) == 1:
                self._fail(batch[0], error)
                return
            # One bad request must not fail the others merged with it: run each alone.
            for request in batch:
                self.stats.retries += 1
                try:
                    request.future.set_result(self._call(request.items, request.cost))
                except Exception as retry_error:  # noqa: BLE001 - as above
                    self._fail(request, retry_error)
            return
        start = 0
        for request in batch:
            end = start + len(request.items)
            request.future.set_result(outputs[start:end])
            start = end

    def _call(self, items: list[T], cost: int) -> list[R]:
        with self._lock if self._lock is not None else nullcontext():
            outputs = list(self._run(items))
        self.stats.calls += 1
        self.stats.items += len(items)
        if self._on_batch is not None:
            try:
                self._on_batch(len(items), cost)
            except Exception:
                logger.exception("micro-batcher %r: on_batch callback failed", self.name)
        if len(outputs) != len(items):
            raise RuntimeError(
                f"micro-batcher {self.name!r}: run returned {len(outputs)} outputs for {len(items)} items"
            )
        return outputs

    def _fail(self, request: _Request[T, R], error: BaseException) -> None:
        self.stats.failures += 1
        request.future.set_exception(error)
