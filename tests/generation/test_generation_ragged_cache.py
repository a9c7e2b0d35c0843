"""Holes in the shared KV cache (padding, rolled-back drafts) are invisible to every row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from evalsuite.generation import ragged_cache
from evalsuite.generation.ragged_cache import RaggedCache


def test_rows_with_padding_and_rolled_back_drafts_see_only_their_own_tokens(
    tiny_llama: Callable[..., Any], reference_logits: Callable[..., torch.Tensor]
) -> None:
    model = tiny_llama(seed=0, layers=2)
    first, second = [5, 9, 11, 4, 7, 30], [8, 3]
    lm = RaggedCache(model)
    with torch.inference_mode():
        logits = lm.prefill([first, second])
        torch.testing.assert_close(logits[0], reference_logits(model, first)[-1])
        torch.testing.assert_close(logits[1], reference_logits(model, second)[-1])
        # Both rows propose 3 tokens; row 0 keeps 1 of them, row 1 keeps all 3.
        lm.extend(torch.tensor([[12, 13, 14], [15, 16, 17]]))
        lm.rollback(torch.tensor([1, 3]), width=3)
        assert lm.lengths.tolist() == [len(first) + 1, len(second) + 3]
        logits = lm.extend(torch.tensor([[20, 21], [22, 23]]))
    torch.testing.assert_close(logits[0], reference_logits(model, [*first, 12, 20, 21])[-2:])
    torch.testing.assert_close(logits[1], reference_logits(model, [*second, 15, 16, 17, 22, 23])[-2:])


def test_columns_no_row_needs_are_cropped(tiny_llama: Callable[..., Any]) -> None:
    lm = RaggedCache(tiny_llama(seed=0))
    with torch.inference_mode():
        lm.prefill([[5, 6, 7], [8]])
        assert lm.columns == 3
        lm.extend(torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]]))
        lm.rollback(torch.tensor([2, 1]), width=4)
    assert lm.columns == 5  # the last two columns were holes in both rows
    assert lm.mask.tolist() == [[True, True, True, True, True], [False, False, True, True, False]]


def test_compaction_and_row_selection_keep_every_rows_numbers(
    tiny_llama: Callable[..., Any],
    reference_logits: Callable[..., torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ragged_cache, "COMPACT_MIN_COLUMNS", 1)
    model = tiny_llama(seed=3, layers=2)
    rows = [[4, 5, 6, 7, 8, 9, 10, 11], [12], [13, 14, 15]]
    lm = RaggedCache(model)
    with torch.inference_mode():
        lm.prefill(rows)
        lm.extend(torch.tensor([[20, 21, 22]] * 3))
        lm.rollback(torch.tensor([0, 0, 1]), width=3)  # more than half holes: compacted
        assert lm.holes() < lm.rows * lm.columns / 2
        lm.select(torch.tensor([2, 1]))
        logits = lm.extend(torch.tensor([[30], [31]]))
    torch.testing.assert_close(logits[0, -1], reference_logits(model, [13, 14, 15, 20, 30])[-1])
    torch.testing.assert_close(logits[1, -1], reference_logits(model, [12, 31])[-1])


def test_samples_share_a_prefill(
    tiny_llama: Callable[..., Any], reference_logits: Callable[..., torch.Tensor]
) -> None:
    model = tiny_llama(seed=0)
    lm = RaggedCache(model)
    with torch.inference_mode():
        lm.prefill([[4, 5], [6, 7, 8]])
        lm.repeat_rows(2)
        logits = lm.extend(torch.tensor([[9], [10], [11], [12]]))
    expected = [[4, 5, 9], [4, 5, 10], [6, 7, 8, 11], [6, 7, 8, 12]]
    for row, tokens in enumerate(expected):
        torch.testing.assert_close(logits[row, -1], reference_logits(model, tokens)[-1])
