"""Micro-batching: concurrent small requests for one model merged into one model batch.

Many threads ``submit`` a few items each; one worker thread per batcher gathers the requests that
arrive within ``max_wait_ms`` of the first one (while they fit a cost budget and an item count),
runs them as one call of ``run``, and hands each caller its own slice of the outputs, in order.
Requests are merged whole; one larger than the budget runs alone, one budget-sized part per turn,
going back to the end of the queue between parts so the requests behind it are not held up.
When a merged batch fails, each of its requests is run again alone, so only the request that
causes the failure gets the error.

A request may carry a deadline (``submit(..., timeout=)`` or ``enqueue(..., deadline=)``): past
it nobody waits for its outputs, so it is not run at all when its turn comes, and running work
stops at the next check of the deadline, releasing the lock. The deadline is checked before each
call of ``run`` (at most ``token_budget`` of cost, or one item costlier than that) and, inside
``run``, before each model batch of :func:`evalsuite.runtime.batching.run_batched`; the work
between two checks (one forward pass, or one pure-Python ``run`` call) is not interrupted.

    batcher = MicroBatcher(lambda texts: model(texts), cost=lambda text: len(text) // 4)
    scores = batcher.submit(["a text", "another"], timeout=30)   # from any thread
    batcher.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from evalsuite.errors import ConfigError, EvalsuiteError
from evalsuite.runtime.batching import DeadlineExceededError, check_deadline, deadline_scope
from evalsuite.runtime.locks import FairLock, Lock

__all__ = ["FairLock", "MicroBatchStats", "MicroBatcher", "MicroBatcherClosedError"]

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
    expired: int = 0  # requests dropped or stopped because their deadline passed


@dataclass(eq=False)
class _Request(Generic[T, R]):
    items: list[T]
    costs: list[int]  # of each item
    future: Future[list[R]]
    deadline: float | None = None  # time.monotonic() after which nobody waits for the outputs
    enqueued_at: float = field(default_factory=time.monotonic)
    started: bool = False  # its future is running: it can no longer be cancelled
    done: list[R] = field(default_factory=list)  # outputs of the parts run so far

    @property
    def remaining(self) -> list[T]:
        return self.items[len(self.done) :]

    @property
    def remaining_costs(self) -> list[int]:
        return self.costs[len(self.done) :]

    @property
    def cost(self) -> int:
        return sum(self.remaining_costs)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def start(self) -> bool:
        """Mark it running (once); ``False`` when its caller cancelled it first."""
        if not self.started:
            self.started = self.future.set_running_or_notify_cancel()
            return self.started
        return True


class MicroBatcher(Generic[T, R]):
    """Merges concurrent requests into batches of ``run``, one worker thread per batcher.

    ``run`` maps a list of items to one output per item. A batch closes when the next waiting
    request would take it over ``token_budget`` (the sum of ``cost`` over its items) or
    ``max_items``, or ``max_wait_ms`` after its first request arrived. ``lock``, when given, is
    held for each turn (a call of ``run``, and the retries when a merged batch failed) and released
    between turns: one lock shared by the batchers of one device keeps their model calls apart, and
    lets them take turns during a long request (a :class:`FairLock` makes the turns alternate).
    ``on_batch(items, cost)`` is told about every call, e.g. for telemetry.

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
        lock: Lock | None = None,
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
    def enqueue(self, items: Sequence[T], *, deadline: float | None = None) -> Future[list[R]]:
        """Queue ``items`` and return at once a future of their outputs, in order (thread-safe).

        Cancelling the future before its batch starts withdraws the request. Past ``deadline`` (a
        ``time.monotonic()`` value) the request is dropped, or its work stopped, and the future
        gets :class:`~evalsuite.runtime.batching.DeadlineExceededError` (a :class:`TimeoutError`).
        """
        request: _Request[T, R] = _Request(
            list(items), [max(0, self._cost(item)) for item in items], Future(), deadline
        )
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

        Raises :class:`TimeoutError` after ``timeout`` seconds (the request is withdrawn, or its
        work stopped at the next deadline check), or the error ``run`` raised for these items.
        """
        future = self.enqueue(items, deadline=None if timeout is None else time.monotonic() + timeout)
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
            if request.start():
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
                    if not request.start():
                        continue  # its caller gave up waiting
                    if request.expired():
                        self._expire(request)  # nobody waits for it: it costs the model nothing
                        continue
                    batch.append(request)
                    cost += request.cost
                    items += len(request.remaining)
                full = bool(self._queue) or cost >= self._token_budget or items >= self._max_items
                remaining = deadline - time.monotonic()
                if full or self._closed or remaining <= 0 or not batch:
                    return batch
                self._condition.wait(remaining)

    def _fits(self, request: _Request[T, R], cost: int, items: int) -> bool:
        return cost + request.cost <= self._token_budget and items + len(request.remaining) <= self._max_items

    def _run_batch(self, batch: list[_Request[T, R]]) -> None:
        try:
            with self._locked_until(_latest_deadline(batch)):
                self._run_turn(batch)
        except DeadlineExceededError:  # the lock stayed busy past every request's deadline
            for request in batch:
                self._expire(request)

    def _run_turn(self, batch: list[_Request[T, R]]) -> None:
        """Run a batch, holding the lock: the requests still awaited, or the next part of a big one."""
        live = []
        for request in batch:
            if request.expired():
                self._expire(request)  # its turn came too late: nobody waits for it any more
            else:
                live.append(request)
        if not live:
            return
        items = [item for request in live for item in request.remaining]
        costs = [cost for request in live for cost in request.remaining_costs]
        # A merged batch fits the budgets whole; only a lone request over them is cut here.
        size = self._part_size(costs)
        try:
            outputs = self._call(items[:size], costs[:size], _latest_deadline(live))
        except DeadlineExceededError:
            # The batch runs until its latest deadline: every request in it is past its own.
            for request in live:
                self._expire(request)
            return
        except Exception as error:  # noqa: BLE001 - the error reaches the callers through their futures
            if len(live) == 1:
                self._fail(live[0], error)
                return
            # One bad request must not fail the others merged with it: run each alone.
            for request in live:
                self._run_alone(request)
            return
        if size < len(items):
            live[0].done.extend(outputs)
            self._requeue(live[0])  # released with the lock, its next part waits its turn
            return
        start = 0
        for request in live:
            end = start + len(request.remaining)
            request.done.extend(outputs[start:end])
            request.future.set_result(request.done)
            start = end

    def _run_alone(self, request: _Request[T, R]) -> None:
        """Run a request of a failed merged batch by itself (it fits the budgets: it was merged)."""
        self.stats.retries += 1
        if request.expired():
            self._expire(request)
            return
        try:
            outputs = self._call(request.remaining, request.remaining_costs, request.deadline)
        except DeadlineExceededError:
            self._expire(request)
        except Exception as error:  # noqa: BLE001 - as in _run_batch
            self._fail(request, error)
        else:
            request.future.set_result([*request.done, *outputs])

    def _requeue(self, request: _Request[T, R]) -> None:
        """Put a request with parts left at the end of the queue: the requests waiting go first."""
        with self._condition:
            self._queue.append(request)

    def _part_size(self, costs: Sequence[int]) -> int:
        """How many of the leading items fit the budgets (at least one)."""
        total = 0
        for count, cost in enumerate(costs):
            total += cost
            if count and (total > self._token_budget or count >= self._max_items):
                return count
        return len(costs)

    def _call(self, items: list[T], costs: list[int], deadline: float | None) -> list[R]:
        """One call of ``run`` (the caller holds the lock), unless ``deadline`` has passed."""
        with deadline_scope(deadline):
            check_deadline()
            outputs = list(self._run(items))
        self.stats.calls += 1
        self.stats.items += len(items)
        if self._on_batch is not None:
            try:
                self._on_batch(len(items), sum(costs))
            except Exception:
                logger.exception("micro-batcher %r: on_batch callback failed", self.name)
        if len(outputs) != len(items):
            raise RuntimeError(
                f"micro-batcher {self.name!r}: run returned {len(outputs)} outputs for {len(items)} items"
            )
        return outputs

    @contextmanager
    def _locked_until(self, deadline: float | None) -> Iterator[None]:
        """Hold the lock (if any), waiting for it no longer than until ``deadline``."""
        if self._lock is None:
            yield
            return
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=wait):
            raise DeadlineExceededError(f"micro-batcher {self.name!r}: the lock was busy until the deadline")
        try:
            yield
        finally:
            self._lock.release()

    def _fail(self, request: _Request[T, R], error: BaseException) -> None:
        self.stats.failures += 1
        request.future.set_exception(error)

    def _expire(self, request: _Request[T, R]) -> None:
        self.stats.expired += 1
        request.future.set_exception(
            DeadlineExceededError(f"micro-batcher {self.name!r}: the request's deadline passed")
        )


def _latest_deadline(batch: Sequence[_Request[Any, Any]]) -> float | None:
    """The time until which someone in ``batch`` still waits (``None``: no deadline)."""
    deadlines = [request.deadline for request in batch]
    return None if None in deadlines else max(d for d in deadlines if d is not None)
