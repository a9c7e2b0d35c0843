"""MicroBatcher: merging, max wait, budgets, error isolation, order, timeouts and close.

Most tests hold the batcher's worker inside a first, "gated" call, so that the requests submitted
meanwhile are all queued when the gate opens: which batches form is then deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import pytest

from evalsuite.errors import ConfigError
from evalsuite.runtime.microbatch import MicroBatcher, MicroBatcherClosedError


class GatedRun:
    """A ``run`` that doubles numbers, records each batch, and blocks its first call until opened."""

    def __init__(self, fail_on: object = None) -> None:
        self.batches: list[list[Any]] = []
        self.first_call_started = threading.Event()
        self.gate = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_call_started.set()
            assert self.gate.wait(10), "the test never opened the gate"
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot score {self.fail_on!r}")
        return [item * 2 for item in items]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def queue_behind_gate(
    batcher: MicroBatcher[Any, Any], run: GatedRun, requests: Sequence[Sequence[Any]]
) -> list[Future[list[Any]]]:
    """Block the worker in a first call, then queue ``requests`` behind it."""
    first = batcher.enqueue([0])
    assert run.first_call_started.wait(10)
    futures = [batcher.enqueue(items) for items in requests]
    wait_until(lambda: batcher.pending == len(requests))
    run.gate.set()
    assert first.result(10) == [0]
    return futures


def test_submit_returns_the_outputs_in_order() -> None:
    with MicroBatcher(lambda items: [item * 2 for item in items], max_wait_ms=0) as batcher:
        assert batcher.submit([3, 1, 2]) == [6, 2, 4]
        assert batcher.submit([]) == []
    assert batcher.stats.calls == 1
    assert batcher.stats.requests == 2


def test_queued_requests_are_merged_into_one_call_and_each_gets_its_own_outputs() -> None:
    run = GatedRun()
    with MicroBatcher(run, max_wait_ms=0) as batcher:
        futures = queue_behind_gate(batcher, run, [[1, 2], [3], [4, 5, 6]])
        assert [future.result(10) for future in futures] == [[2, 4], [6], [8, 10, 12]]
    assert run.batches == [[0], [1, 2, 3, 4, 5, 6]]
    assert batcher.stats.calls == 2
    assert batcher.stats.items == 7


def test_requests_arriving_within_max_wait_share_a_batch() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        return items

    # A long window, so two back-to-back submissions land in it however slow the machine.
    with MicroBatcher(run, max_wait_ms=300) as batcher:
        started = time.monotonic()
        first, second = batcher.enqueue([1]), batcher.enqueue([2])
        assert first.result(10) == [1]
        assert second.result(10) == [2]
        waited = time.monotonic() - started
    assert calls == [[1, 2]]
    assert waited >= 0.29  # nothing filled the batch, so it waited the whole window


def test_a_lone_request_waits_only_max_wait() -> None:
    with MicroBatcher(lambda items: items, max_wait_ms=20) as batcher:
        started = time.monotonic()
        assert batcher.submit([1], timeout=5) == [1]
    assert time.monotonic() - started < 1.0


def test_a_full_batch_leaves_without_waiting() -> None:
    with MicroBatcher(lambda items: items, max_items=2, max_wait_ms=10_000) as batcher:
        started = time.monotonic()
        assert batcher.submit([1, 2], timeout=5) == [1, 2]
    assert time.monotonic() - started < 5


def test_token_budget_splits_batches_without_splitting_requests() -> None:
    run = GatedRun()
    with MicroBatcher(run, cost=lambda item: item, token_budget=10, max_wait_ms=0) as batcher:
        futures = queue_behind_gate(batcher, run, [[6], [4, 2], [3], [7]])
        assert [future.result(10) for future in futures] == [[12], [8, 4], [6], [14]]
    # 6 alone (6 + 4 + 2 > 10); then 4, 2 and 3 (9); then 7.
    assert run.batches == [[0], [6], [4, 2, 3], [7]]


def test_a_request_over_the_budget_runs_alone() -> None:
    run = GatedRun()
    with MicroBatcher(run, cost=lambda item: item, token_budget=5, max_wait_ms=0) as batcher:
        futures = queue_behind_gate(batcher, run, [[9], [1]])
        assert [future.result(10) for future in futures] == [[18], [2]]
    assert run.batches == [[0], [9], [1]]


def test_max_items_splits_batches() -> None:
    run = GatedRun()
    with MicroBatcher(run, max_items=3, max_wait_ms=0) as batcher:
        futures = queue_behind_gate(batcher, run, [[1, 2], [3], [4, 5], [6]])
        for future in futures:
            future.result(10)
    assert run.batches == [[0], [1, 2, 3], [4, 5, 6]]


def test_a_failing_request_does_not_fail_the_requests_merged_with_it() -> None:
    run = GatedRun(fail_on=13)
    with MicroBatcher(run, max_wait_ms=0) as batcher:
        good_before, bad, good_after = queue_behind_gate(batcher, run, [[1], [13, 2], [3]])
        assert good_before.result(10) == [2]
        assert good_after.result(10) == [6]
        with pytest.raises(ValueError, match="cannot score 13"):
            bad.result(10)
    # The merged batch failed, then each request ran alone.
    assert run.batches == [[0], [1, 13, 2, 3], [1], [13, 2], [3]]
    assert batcher.stats.retries == 3
    assert batcher.stats.failures == 1


def test_a_lone_failing_request_is_not_retried() -> None:
    run = GatedRun(fail_on=13)
    run.gate.set()
    with MicroBatcher(run, max_wait_ms=0) as batcher, pytest.raises(ValueError, match="cannot score 13"):
        batcher.submit([13])
    assert run.batches == [[13]]
    assert batcher.stats.retries == 0


def test_a_run_returning_the_wrong_number_of_outputs_is_an_error() -> None:
    with MicroBatcher(lambda items: items[:-1], max_wait_ms=0) as batcher:
        with pytest.raises(RuntimeError, match="2 outputs for 3 items"):
            batcher.submit([1, 2, 3])
        # the worker survives it
        assert batcher.submit([]) == []


def test_outputs_reach_the_right_caller_under_concurrency() -> None:
    with MicroBatcher(lambda items: [item * 2 for item in items], max_wait_ms=2) as batcher:
        results: dict[int, list[int]] = {}

        def call(thread: int) -> None:
            items = [thread * 100 + i for i in range(thread % 4 + 1)]
            results[thread] = batcher.submit(items, timeout=10)

        threads = [threading.Thread(target=call, args=(n,)) for n in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert results == {n: [2 * (n * 100 + i) for i in range(n % 4 + 1)] for n in range(24)}
    assert batcher.stats.requests == 24


def test_a_timed_out_request_is_withdrawn_before_it_runs() -> None:
    run = GatedRun()
    with MicroBatcher(run, max_wait_ms=0) as batcher:
        first = batcher.enqueue([0])
        assert run.first_call_started.wait(10)
        with pytest.raises(TimeoutError, match=r"no result within 0\.05 s"):
            batcher.submit([7], timeout=0.05)
        run.gate.set()
        assert first.result(10) == [0]
        assert batcher.submit([1], timeout=10) == [2]
    assert [7] not in run.batches
    assert run.batches == [[0], [1]]


def test_the_lock_is_held_around_each_run() -> None:
    lock = threading.Lock()
    held: list[bool] = []

    def run(items: list[int]) -> list[int]:
        held.append(lock.locked())
        return items

    with MicroBatcher(run, lock=lock, max_wait_ms=0) as batcher:
        batcher.submit([1])
        with lock:  # while someone else holds it, the batcher waits
            future = batcher.enqueue([2])
            time.sleep(0.02)
            assert not future.done()
        assert future.result(10) == [2]
    assert held == [True, True]


def test_on_batch_is_told_items_and_cost() -> None:
    seen: list[tuple[int, int]] = []
    run = GatedRun()
    with MicroBatcher(
        run, cost=lambda item: item, max_wait_ms=0, on_batch=lambda n, c: seen.append((n, c))
    ) as batcher:
        futures = queue_behind_gate(batcher, run, [[1, 2], [3]])
        for future in futures:
            future.result(10)
    assert seen == [(1, 0), (3, 6)]


def test_close_finishes_queued_work_then_refuses_more() -> None:
    run = GatedRun()
    batcher = MicroBatcher(run, max_wait_ms=0)
    first = batcher.enqueue([0])
    assert run.first_call_started.wait(10)
    queued = batcher.enqueue([5])
    closing = threading.Thread(target=batcher.close)
    closing.start()
    wait_until(lambda: batcher._closed)
    with pytest.raises(MicroBatcherClosedError):
        batcher.submit([1])
    run.gate.set()
    closing.join(10)
    assert not closing.is_alive()
    assert first.result(0) == [0]
    assert queued.result(0) == [10]
    batcher.close()  # twice is harmless


def test_close_with_a_timeout_fails_requests_left_in_the_queue() -> None:
    run = GatedRun()
    batcher = MicroBatcher(run, max_wait_ms=0)
    first = batcher.enqueue([0])
    assert run.first_call_started.wait(10)
    queued = batcher.enqueue([5])
    batcher.close(timeout=0.05)
    with pytest.raises(MicroBatcherClosedError, match="closed before running"):
        queued.result(1)
    run.gate.set()
    assert first.result(10) == [0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_budget": 0}, "token_budget and max_items must be positive"),
        ({"max_items": 0}, "token_budget and max_items must be positive"),
        ({"max_wait_ms": -1}, "max_wait_ms must be zero or more"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MicroBatcher(lambda items: items, **options)
