"""Tests of evalsuite.runtime.batching: token-budget plans, order restore, out-of-memory back-off."""

from __future__ import annotations

import pytest

from evalsuite.errors import ConfigError
from evalsuite.runtime.batching import plan_batches, run_batched

PLAN_CASES = [
    pytest.param([3, 10, 5, 4], 12, 8, id="docstring"),
    pytest.param([], 100, 4, id="empty"),
    pytest.param([7], 1, 1, id="one-over-long"),
    pytest.param([5] * 10, 20, 3, id="equal-lengths-size-bound"),
    pytest.param([5] * 10, 12, 64, id="equal-lengths-token-bound"),
    pytest.param([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 30, 4, id="ascending"),
    pytest.param([50, 1, 1, 1, 60, 2, 2, 30], 40, 8, id="over-long-among-short"),
    pytest.param([i * 37 % 23 + 1 for i in range(100)], 64, 16, id="pseudo-random"),
    pytest.param([512, 511, 3, 3, 3], 512, 64, id="exactly-at-budget"),
]


@pytest.mark.parametrize(("lengths", "token_budget", "max_batch_size"), PLAN_CASES)
def test_plan_covers_every_index_exactly_once(
    lengths: list[int], token_budget: int, max_batch_size: int
) -> None:
    batches = plan_batches(lengths, token_budget=token_budget, max_batch_size=max_batch_size)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(batches), "no batch is empty"


@pytest.mark.parametrize(("lengths", "token_budget", "max_batch_size"), PLAN_CASES)
def test_plan_respects_budgets(lengths: list[int], token_budget: int, max_batch_size: int) -> None:
    for batch in plan_batches(lengths, token_budget=token_budget, max_batch_size=max_batch_size):
        assert len(batch) <= max_batch_size
        padded_tokens = len(batch) * max(lengths[i] for i in batch)
        if len(batch) > 1:
            assert padded_tokens <= token_budget
        else:
            # Only an item longer than the budget may exceed it, and then it is alone.
            assert padded_tokens <= token_budget or lengths[batch[0]] > token_budget


@pytest.mark.parametrize(("lengths", "token_budget", "max_batch_size"), PLAN_CASES)
def test_plan_runs_longest_first(lengths: list[int], token_budget: int, max_batch_size: int) -> None:
    flat = [
        i
        for batch in plan_batches(lengths, token_budget=token_budget, max_batch_size=max_batch_size)
        for i in batch
    ]
    flat_lengths = [lengths[i] for i in flat]
    assert flat_lengths == sorted(flat_lengths, reverse=True)


def test_plan_puts_an_over_long_item_alone() -> None:
    batches = plan_batches([2, 100, 2, 2], token_budget=10, max_batch_size=8)
    assert batches[0] == [1]
    assert [1] in batches
    assert sorted(batches[1]) == [0, 2, 3]


def test_plan_doc_example() -> None:
    assert plan_batches([3, 10, 5, 4], token_budget=12, max_batch_size=8) == [[1], [2, 3], [0]]


def test_plan_is_deterministic_for_ties() -> None:
    assert plan_batches([4, 4, 4, 4], token_budget=8, max_batch_size=8) == [[0, 1], [2, 3]]


@pytest.mark.parametrize(
    ("token_budget", "max_batch_size"),
    [(0, 4), (-1, 4), (10, 0), (10, -3), (0, 0)],
)
def test_plan_rejects_invalid_budgets(token_budget: int, max_batch_size: int) -> None:
    with pytest.raises(ConfigError, match="must be positive"):
        plan_batches([1, 2, 3], token_budget=token_budget, max_batch_size=max_batch_size)


@pytest.mark.parametrize(("token_budget", "max_batch_size"), [(4, 1), (20, 3), (1000, 64)])
def test_run_batched_restores_the_callers_order(token_budget: int, max_batch_size: int) -> None:
    items = ["ccc", "a", "bbbbb", "dd", "eeee", "f", "gggggg"]
    calls: list[list[str]] = []

    def compute(batch: list[str]) -> list[object]:
        calls.append(batch)
        return [item.upper() for item in batch]

    outputs = run_batched(
        items,
        [len(item) for item in items],
        compute,
        token_budget=token_budget,
        max_batch_size=max_batch_size,
    )
    assert outputs == [item.upper() for item in items]
    assert sorted(item for batch in calls for item in batch) == sorted(items)


def test_run_batched_on_no_items_calls_nothing() -> None:
    def compute(batch: list[str]) -> list[object]:
        raise AssertionError("compute must not be called")

    assert run_batched([], [], compute, token_budget=10, max_batch_size=4) == []


class FakeOutOfMemoryError(Exception):
    """What a device raises when a batch does not fit."""


def _is_fake_oom(error: BaseException) -> bool:
    return isinstance(error, FakeOutOfMemoryError)


def test_out_of_memory_halves_the_batch_and_succeeds() -> None:
    items = list(range(8))
    sizes: list[int] = []
    released: list[bool] = []

    def compute(batch: list[int]) -> list[object]:
        sizes.append(len(batch))
        if len(batch) > 2:
            raise FakeOutOfMemoryError("CUDA out of memory")
        return [item * 10 for item in batch]

    outputs = run_batched(
        items,
        [1] * len(items),
        compute,
        token_budget=1000,
        max_batch_size=8,
        is_out_of_memory=_is_fake_oom,
        on_out_of_memory=lambda: released.append(True),
    )
    assert outputs == [item * 10 for item in items]
    assert sizes[0] == 8
    assert max(size for size in sizes[1:]) <= 4
    assert sum(size for size in sizes if size <= 2) == len(items)
    assert released, "cached memory is released before retrying"
    assert len(released) == sizes.count(8) + sizes.count(4) + sizes.count(3)


def test_out_of_memory_back_off_keeps_order_with_uneven_lengths() -> None:
    items = ["a" * n for n in (3, 9, 1, 7, 5, 2, 8)]

    def compute(batch: list[str]) -> list[object]:
        if len(batch) > 2:
            raise FakeOutOfMemoryError("out of memory")
        return [len(item) for item in batch]

    outputs = run_batched(
        items,
        [len(item) for item in items],
        compute,
        token_budget=10_000,
        max_batch_size=64,
        is_out_of_memory=_is_fake_oom,
    )
    assert outputs == [len(item) for item in items]


def test_out_of_memory_on_a_single_item_re_raises() -> None:
    def compute(batch: list[int]) -> list[object]:
        raise FakeOutOfMemoryError("out of memory")

    with pytest.raises(FakeOutOfMemoryError):
        run_batched(
            [1, 2, 3], [1, 1, 1], compute, token_budget=100, max_batch_size=4, is_out_of_memory=_is_fake_oom
        )


def test_out_of_memory_on_a_lone_item_re_raises_at_once() -> None:
    calls: list[int] = []

    def compute(batch: list[int]) -> list[object]:
        calls.append(len(batch))
        raise FakeOutOfMemoryError("out of memory")

    with pytest.raises(FakeOutOfMemoryError):
        run_batched([1], [1], compute, token_budget=100, max_batch_size=4, is_out_of_memory=_is_fake_oom)
    assert calls == [1]


def test_other_errors_propagate_without_retry() -> None:
    calls: list[int] = []

    def compute(batch: list[int]) -> list[object]:
        calls.append(len(batch))
        raise ValueError("a bug, not a memory problem")

    with pytest.raises(ValueError, match="a bug"):
        run_batched(
            [1, 2, 3, 4], [1] * 4, compute, token_budget=100, max_batch_size=4, is_out_of_memory=_is_fake_oom
        )
    assert calls == [4]


def test_without_a_recogniser_out_of_memory_errors_propagate() -> None:
    def compute(batch: list[int]) -> list[object]:
        raise FakeOutOfMemoryError("out of memory")

    with pytest.raises(FakeOutOfMemoryError):
        run_batched([1, 2, 3, 4], [1] * 4, compute, token_budget=100, max_batch_size=4)
