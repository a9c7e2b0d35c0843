"""One KV cache over a batch of rows that advance by different amounts (ragged speculative steps).

Rows share one rectangular ``DynamicCache``: every forward pass appends the same number of
columns to every row, and a 2-D attention mask says which columns are real tokens. Padding
(shorter prompts, shorter catch-ups) and rolled-back draft tokens become *holes*: masked columns
that no later token attends to. Position ids count a row's real tokens only, so each row sees
exactly the positions and keys it would see decoded alone. Columns that are holes in every row
are cropped at once; when holes fill more than half of the cache it is compacted (each row's
real columns gathered to the right, the rest left padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from evalsuite.errors import ConfigError

# Compact when at least this share of the cache's columns are holes (and the cache is not tiny):
# attention cost grows with columns, and one gather per layer costs less than a forward pass.
COMPACT_HOLE_SHARE = 0.5
COMPACT_MIN_COLUMNS = 64


class RaggedCache:
    """A causal LM and its KV cache over ``rows`` sequences that grow by different amounts.

    >>> # lm = RaggedCache(model); logits = lm.prefill([[1, 2, 3], [4, 5]])   # [2, vocab]
    >>> # logits = lm.extend(torch.tensor([[6, 7], [8, 9]]))                  # [2, 2, vocab]
    >>> # lm.rollback(torch.tensor([2, 1]), width=2)   # row 1 keeps only token 8
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.bool, device=self.device)
        self.lengths = torch.zeros(0, dtype=torch.long, device=self.device)  # real tokens per row

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def columns(self) -> int:
        return int(self.mask.shape[1])

    def reset(self) -> None:
        """Forget every row (a new batch starts)."""
        self.cache = None
        self.mask = torch.zeros((0, 0), dtype=torch.bool, device=self.device)
        self.lengths = torch.zeros(0, dtype=torch.long, device=self.device)

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        # Holes and position bookkeeping assume every layer keeps every column: a sliding window
        # would drop columns by count, not by position.
        if any(getattr(cache, "is_sliding", [])) or any(getattr(cache, "is_linear", [])):
            raise ConfigError(
                f"speculative generation needs full-attention layers; {type(self.model).__name__} "
                "has sliding-window or linear-attention layers"
            )
        return cache

    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Start the batch with left-padded ``prompts``; the logits after each prompt's last token."""
        if not prompts or any(not prompt for prompt in prompts):
            raise ConfigError("every prompt needs at least one token")
        self.reset()
        self.cache = self._new_cache()
        self.mask = torch.zeros((len(prompts), 0), dtype=torch.bool, device=self.device)
        self.lengths = torch.zeros(len(prompts), dtype=torch.long, device=self.device)
        return self.extend_ragged(prompts, last_only=True)[:, -1]

    def extend_ragged(self, pieces: Sequence[Sequence[int]], *, last_only: bool = False) -> torch.Tensor:
        """Append each row's own tokens (left-padded with holes to a common width)."""
        width = max(len(piece) for piece in pieces)
        tokens = torch.zeros((len(pieces), width), dtype=torch.long)
        valid = torch.zeros((len(pieces), width), dtype=torch.bool)
        for row, piece in enumerate(pieces):
            if piece:
                tokens[row, width - len(piece) :] = torch.tensor(piece, dtype=torch.long)
                valid[row, width - len(piece) :] = True
        return self.extend(tokens.to(self.device), valid.to(self.device), last_only=last_only)

    def extend(
        self, tokens: torch.Tensor, valid: torch.Tensor | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        """Append ``tokens`` ``[rows, width]`` (``valid`` False: a hole); logits ``[rows, width or 1, vocab]``."""
        if self.cache is None:
            raise RuntimeError("extend() before prefill()")
        if valid is None:
            valid = torch.ones_like(tokens, dtype=torch.bool)
        positions = (self.lengths[:, None] + valid.long().cumsum(dim=1) - 1).clamp(min=0)
        attention_mask = torch.cat([self.mask, valid], dim=1)
        output = self.model(
            input_ids=tokens,
            attention_mask=attention_mask.long(),
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1 if last_only else 0,
        )
        self.mask = attention_mask
        self.lengths = self.lengths + valid.sum(dim=1)
        return output.logits

    def rollback(self, keep: torch.Tensor, width: int) -> None:
        """Of the last ``width`` columns, row ``r`` keeps its first ``keep[r]``; the rest become holes."""
        if width == 0:
            return
        tail = self.mask[:, -width:]
        dropped = torch.arange(width, device=self.device)[None, :] >= keep[:, None]
        self.lengths = self.lengths - (tail & dropped).sum(dim=1)
        self.mask = torch.cat([self.mask[:, :-width], tail & ~dropped], dim=1)
        trailing = width - min(int(keep.max()), width) if self.rows else width
        if trailing > 0:
            self.cache.crop(-trailing)
            self.mask = self.mask[:, :-trailing]
        self._maybe_compact()

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current rows), in that order."""
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]
        self.lengths = self.lengths[rows]
        self._maybe_compact()

    def repeat_rows(self, repeats: int) -> None:
        """Each row becomes ``repeats`` consecutive rows (samples of one prompt share its prefill)."""
        if repeats == 1:
            return
        self.cache.batch_repeat_interleave(repeats)
        self.mask = self.mask.repeat_interleave(repeats, dim=0)
        self.lengths = self.lengths.repeat_interleave(repeats, dim=0)

    def holes(self) -> int:
        return self.rows * self.columns - int(self.lengths.sum())

    def _maybe_compact(self) -> None:
        if (
            self.columns >= COMPACT_MIN_COLUMNS
            and self.holes() >= COMPACT_HOLE_SHARE * self.rows * self.columns
        ):
            self.compact()

    def compact(self) -> None:
        """Gather each row's real columns to the right; the widest row sets the new width."""
        if not self.rows:
            return
        width = int(self.lengths.max())
        # Stable sort puts holes first and keeps real columns in order; the last `width` are kept.
        order = torch.sort(self.mask.long(), dim=1, stable=True).indices[:, self.columns - width :]
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
                continue
            layer.keys = _gather_columns(layer.keys, order)
            layer.values = _gather_columns(layer.values, order)
        self.mask = self.mask.gather(1, order)


def _gather_columns(states: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``states[row, :, order[row], :]`` for cached keys or values ``[rows, heads, columns, dim]``."""
    index = order[:, None, :, None].expand(-1, states.shape[1], -1, states.shape[-1])
    return states.gather(2, index)
