"""Length-sorted, token-budgeted batches with the caller's order restored and OOM back-off.

Written once, used by every model call (sentence-transformers' ``encode()`` is the model):
longest inputs first so a memory error surfaces at once, batches bounded by a token budget
(padded tokens, i.e. ``batch size × longest length``) and a maximum batch size.

A caller that must stop by a time (a request with a timeout) runs the work inside
:func:`deadline_scope`; :func:`run_batched` checks it before every batch, so every model call
stops at its next forward pass once the deadline has passed (:class:`DeadlineExceededError`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from evalsuite.errors import ConfigError, EvalsuiteError

T = TypeVar("T")

# A time.monotonic() value; a context variable, so it follows the work on its own thread only.
_deadline: ContextVar[float | None] = ContextVar("evalsuite_deadline", default=None)


class DeadlineExceededError(EvalsuiteError, TimeoutError):
    """Work stopped between two batches because its deadline had passed (nobody waits for it)."""


@contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Run the block under ``deadline`` (a ``time.monotonic()`` value; ``None`` adds none).

    Scopes nest: the earliest deadline applies.
    """
    deadlines = [time for time in (_deadline.get(), deadline) if time is not None]
    token = _deadline.set(min(deadlines) if deadlines else None)
    try:
        yield
    finally:
        _deadline.reset(token)


def check_deadline() -> None:
    """Raise :class:`DeadlineExceededError` when the current :func:`deadline_scope` has run out."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceededError("the work's deadline passed; it was stopped between two batches")


def plan_batches(lengths: Sequence[int], *, token_budget: int, max_batch_size: int) -> list[list[int]]:
    """Split item indices into batches, longest first, each within the budgets.

    A batch holds at most ``max_batch_size`` items and at most ``token_budget`` padded tokens;
    an item longer than the budget gets a batch of its own.

    >>> plan_batches([3, 10, 5, 4], token_budget=12, max_batch_size=8)
    [[1], [2, 3], [0]]
    """
    if token_budget < 1 or max_batch_size < 1:
        raise ConfigError(
            f"token_budget and batch_size must be positive, got {token_budget} and {max_batch_size}"
        )
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        fits = (len(current) + 1) * longest_if_added <= token_budget and len(current) < max_batch_size
        if current and not fits:
            batches.append(current)
            current, longest_if_added = [], lengths[index]
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


def run_batched(
    items: Sequence[T],
    lengths: Sequence[int],
    compute: Callable[[list[T]], list[object]],
    *,
    token_budget: int,
    max_batch_size: int,
    is_out_of_memory: Callable[[BaseException], bool] = lambda error: False,
    on_out_of_memory: Callable[[], None] = lambda: None,
) -> list[object]:
    """Apply ``compute`` to batches of ``items`` and return its outputs in the caller's order.

    ``compute`` maps a list of items to one output per item. When it raises an out-of-memory
    error, the batch is halved and retried (down to one item, which then re-raises), and the
    budgets stay halved for the rest of the call. Checks :func:`check_deadline` before each batch.
    """
    results: list[object] = [None] * len(items)
    pending = plan_batches(lengths, token_budget=token_budget, max_batch_size=max_batch_size)
    while pending:
        check_deadline()
        batch = pending.pop(0)
        try:
            outputs = compute([items[i] for i in batch])
        except Exception as error:
            if not is_out_of_memory(error) or len(batch) == 1:
                raise
            on_out_of_memory()
            half = len(batch) // 2
            token_budget = max(1, token_budget // 2)
            max_batch_size = max(1, max_batch_size // 2)
            pending[:0] = [batch[:half], batch[half:]]
            continue
        for index, output in zip(batch, outputs, strict=True):
            results[index] = output
    return results
