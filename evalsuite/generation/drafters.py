"""Drafters: cheap proposers of the next tokens, behind one small interface (``propose``).

* :class:`NoDrafter` proposes nothing: the target decodes alone (the baseline, same loop).
* :class:`NgramDrafter` copies what followed the current suffix earlier in the prompt or the
  text generated so far (prompt lookup decoding); no model.
* :class:`ModelDrafter` runs a small causal LM with its own ragged KV cache: a smaller model
  with the target's tokenizer, or the target's own first layers (:func:`layer_skip_model`).

A drafter sees only a :class:`DraftContext` (each active row's committed tokens and stable row
id) and returns a :class:`Proposal`; it keeps whatever state it likes between calls and works
out by itself which of its earlier proposals the target accepted.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evalsuite.errors import ConfigError
from evalsuite.generation.ragged_cache import RaggedCache
from evalsuite.generation.sampling import SamplingParams, sample, token_probabilities


@dataclass(frozen=True)
class DraftContext:
    """What a drafter may read: the active rows, their committed tokens, and how far to look ahead."""

    sequences: Sequence[Sequence[int]]  # per active row: prompt + tokens generated so far
    row_ids: Sequence[int]  # a stable id per active row (rows leave the batch when they finish)
    max_tokens: int  # γ: propose at most this many tokens per row
    sampling: SamplingParams
    generator: torch.Generator | None
    vocab_size: int  # the target's output vocabulary (draft distributions are aligned to it)
    device: torch.device


@dataclass(frozen=True)
class Proposal:
    """Draft tokens ``[rows, width]``; row ``r`` proposes its first ``lengths[r]`` of them.

    ``probabilities`` ``[rows, width, vocab]`` is the distribution each token was drawn from
    (sampling with a model drafter); ``None`` means deterministic proposals (one-hot ``q``).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    probabilities: torch.Tensor | None = None

    @property
    def width(self) -> int:
        return int(self.tokens.shape[1])

    @classmethod
    def empty(cls, rows: int, device: torch.device) -> Proposal:
        return cls(
            torch.zeros((rows, 0), dtype=torch.long, device=device),
            torch.zeros(rows, dtype=torch.long, device=device),
        )


class Drafter(ABC):
    """Proposes tokens for the target to verify.

    ``relative_cost`` is the time of one draft token relative to one plain decoding step of the
    target (parameter ratio for models, ~0 for lookups); it sets how long drafts are worth making.
    """

    name: str = "drafter"
    relative_cost: float = 0.0

    def start(self) -> None:  # noqa: B027 - optional hook: stateless drafters need nothing
        """A new batch begins: forget per-row state."""

    @abstractmethod
    def propose(self, context: DraftContext) -> Proposal:
        """Up to ``context.max_tokens`` tokens for each active row."""

    def describe(self) -> dict[str, Any]:
        return {"drafter": self.name, "relative_cost": round(self.relative_cost, 4)}


class NoDrafter(Drafter):
    """No drafts: every step is one plain decoding step of the target."""

    name = "none"

    def propose(self, context: DraftContext) -> Proposal:
        return Proposal.empty(len(context.sequences), context.device)


class NgramDrafter(Drafter):
    """Prompt lookup: find the longest recent n-gram equal to the current suffix, copy what followed it.

    Suited to grounded tasks (summarising or answering from a passage), where the answer copies
    spans of the prompt. Looks in the prompt and in the text generated so far; the most recent
    occurrence wins. Each row keeps an index of its n-grams, updated with new tokens only.

    >>> drafter = NgramDrafter(max_ngram=2)
    >>> context = DraftContext([[5, 6, 7, 8, 5, 6]], [0], 2, SamplingParams(), None, 10, torch.device("cpu"))
    >>> drafter.propose(context).tokens.tolist()
    [[7, 8]]
    """

    name = "ngram"

    def __init__(self, *, max_ngram: int = 4, min_ngram: int = 2) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ConfigError(
                f"n-gram sizes must satisfy 1 <= min_ngram <= max_ngram, got {min_ngram} and {max_ngram}"
            )
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self._index: dict[int, dict[tuple[int, ...], int]] = {}
        self._indexed: dict[int, int] = {}

    def start(self) -> None:
        self._index.clear()
        self._indexed.clear()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_ngram": self.max_ngram, "min_ngram": self.min_ngram}

    def propose(self, context: DraftContext) -> Proposal:
        drafts = [
            self._lookup(row, tokens, context.max_tokens)
            for row, tokens in zip(context.row_ids, context.sequences, strict=True)
        ]
        width = max((len(draft) for draft in drafts), default=0)
        tokens = torch.zeros((len(drafts), width), dtype=torch.long)
        for row, draft in enumerate(drafts):
            tokens[row, : len(draft)] = torch.tensor(draft, dtype=torch.long)
        lengths = torch.tensor([len(draft) for draft in drafts], dtype=torch.long)
        return Proposal(tokens.to(context.device), lengths.to(context.device))

    def _lookup(self, row: int, tokens: Sequence[int], limit: int) -> list[int]:
        index = self._index.setdefault(row, {})
        # An n-gram ending at `end` (exclusive) is indexed once a token follows it: end <= len - 1,
        # so the current suffix never matches itself.
        for end in range(self._indexed.get(row, 0) + 1, len(tokens)):
            for size in range(self.min_ngram, min(self.max_ngram, end) + 1):
                index[tuple(tokens[end - size : end])] = end
        self._indexed[row] = max(self._indexed.get(row, 0), len(tokens) - 1)
        for size in range(min(self.max_ngram, len(tokens)), self.min_ngram - 1, -1):
            found = index.get(tuple(tokens[len(tokens) - size :]))
            if found is not None:
                return list(tokens[found : found + limit])
        return []


class ModelDrafter(Drafter):
    """A small causal LM sharing the target's vocabulary, decoding all rows in one ragged batch.

    Its KV cache keeps each row's committed tokens and its own last proposals; on the next call
    it keeps the proposals the target accepted, masks the rest, and catches up on the tokens it
    has not seen (the target's correction or bonus token) in the same pass as its first draft.
    """

    def __init__(self, model: Any, *, name: str, relative_cost: float) -> None:
        self.name = name
        self.relative_cost = relative_cost
        self.model = model
        self._lm = RaggedCache(model)
        self._row_ids: list[int] = []
        self._cached: list[int] = []  # leading committed tokens of each row held in the cache
        self._fed: list[list[int]] = []  # draft tokens appended after them by the last proposal

    def start(self) -> None:
        self._lm.reset()
        self._row_ids, self._cached, self._fed = [], [], []

    def propose(self, context: DraftContext) -> Proposal:
        if context.max_tokens < 1:
            return Proposal.empty(len(context.sequences), context.device)
        logits = self._catch_up(context)
        rows = len(context.sequences)
        tokens: list[torch.Tensor] = []
        distributions: list[torch.Tensor] = []
        for step in range(context.max_tokens):
            aligned = _fit_vocabulary(logits.float(), context.vocab_size)
            if context.sampling.greedy:
                token = aligned.argmax(dim=-1)
            else:
                probabilities = token_probabilities(aligned, context.sampling)
                token = sample(probabilities, context.generator)
                distributions.append(probabilities)
            tokens.append(token)
            if step + 1 < context.max_tokens:
                logits = self._lm.extend(token[:, None])[:, -1]
        fed = torch.stack(tokens[:-1], dim=1).tolist() if len(tokens) > 1 else [[] for _ in range(rows)]
        self._fed = fed
        return Proposal(
            torch.stack(tokens, dim=1),
            torch.full((rows,), context.max_tokens, dtype=torch.long, device=context.device),
            torch.stack(distributions, dim=1) if distributions else None,
        )

    def _catch_up(self, context: DraftContext) -> torch.Tensor:
        """Bring the cache up to each row's committed tokens; the logits after the last one."""
        sequences = context.sequences
        if self._lm.cache is None or not self._row_ids:
            logits = self._lm.prefill(sequences)
            self._row_ids = list(context.row_ids)
            self._cached = [len(tokens) for tokens in sequences]
            self._fed = [[] for _ in sequences]
            return logits
        if list(context.row_ids) != self._row_ids:
            where = {row: position for position, row in enumerate(self._row_ids)}
            keep = [where[row] for row in context.row_ids]
            self._lm.select(torch.tensor(keep, device=self._lm.device))
            self._row_ids = list(context.row_ids)
            self._cached = [self._cached[i] for i in keep]
            self._fed = [self._fed[i] for i in keep]
        width = len(self._fed[0]) if self._fed else 0
        # Proposals the target kept stay cached; the last committed token is always fed again, as
        # its logits give the first draft token.
        kept = [
            min(_common_prefix(fed, tokens[cached : cached + len(fed)]), len(tokens) - cached - 1)
            for fed, tokens, cached in zip(self._fed, sequences, self._cached, strict=True)
        ]
        self._lm.rollback(torch.tensor(kept, device=self._lm.device), width)
        self._cached = [cached + keep for cached, keep in zip(self._cached, kept, strict=True)]
        missing = [list(tokens[cached:]) for tokens, cached in zip(sequences, self._cached, strict=True)]
        self._cached = [len(tokens) for tokens in sequences]
        self._fed = [[] for _ in sequences]
        return self._lm.extend_ragged(missing, last_only=True)[:, -1]


def _common_prefix(left: Sequence[int], right: Sequence[int]) -> int:
    count = 0
    for a, b in zip(left, right, strict=False):
        if a != b:
            break
        count += 1
    return count


def _fit_vocabulary(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Draft logits over exactly the target's vocabulary (models pad their embedding tables differently)."""
    size = logits.shape[-1]
    if size == vocab_size:
        return logits
    if size > vocab_size:
        return logits[..., :vocab_size]
    padding = torch.full((*logits.shape[:-1], vocab_size - size), float("-inf"), device=logits.device)
    return torch.cat([logits, padding], dim=-1)


def decoding_cost(model: Any) -> int:
    """Parameters touched per decoded token: all but the input embedding table (the LM head counts)."""
    embeddings = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    total = sum(parameter.numel() for parameter in model.parameters())
    tied = head is not None and head.weight is embeddings
    return total - embeddings.numel() + (embeddings.numel() if tied else 0)


def layer_skip_model(model: Any, layers: int) -> Any:
    """The target's first ``layers`` decoder layers, final norm and LM head, as a causal LM.

    No weights are copied: the view shares the target's modules (a self-speculative draft as in
    LayerSkip, Elhoushi et al. 2024, without its early-exit training).
    """
    decoder: Any = getattr(model, "model", None)
    stack = getattr(decoder, "layers", None)
    if decoder is None or not isinstance(stack, torch.nn.ModuleList):
        raise ConfigError(
            f"layer-skip drafting needs a decoder-only model with `.model.layers` (Llama-style); "
            f"got {type(model).__name__}"
        )
    total = len(stack)
    if not 1 <= layers < total:
        raise ConfigError(f"--draft-layers must be between 1 and {total - 1} for this model, got {layers}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types)[:layers]
    inner = copy.copy(decoder)
    inner._modules = dict(decoder._modules)  # a fresh module table, so the target keeps all its layers
    inner.layers = torch.nn.ModuleList(list(stack)[:layers])
    inner.config = config
    outer = copy.copy(model)
    outer._modules = dict(model._modules)
    outer.model = inner
    outer.config = config
    return outer


def check_same_vocabulary(
    target_vocabulary: Mapping[str, int], draft_vocabulary: Mapping[str, int], *, target: str, draft: str
) -> None:
    """Raise :class:`ConfigError` unless both tokenizers map the same strings to the same ids."""
    if dict(target_vocabulary) == dict(draft_vocabulary):
        return
    only_target = sorted(set(target_vocabulary) - set(draft_vocabulary))
    only_draft = sorted(set(draft_vocabulary) - set(target_vocabulary))
    moved = sorted(
        token
        for token in set(target_vocabulary) & set(draft_vocabulary)
        if target_vocabulary[token] != draft_vocabulary[token]
    )
    details = []
    if only_target:
        details.append(f"{len(only_target)} tokens only in the target's (e.g. {only_target[:3]})")
    if only_draft:
        details.append(f"{len(only_draft)} tokens only in the draft's (e.g. {only_draft[:3]})")
    if moved:
        details.append(f"{len(moved)} tokens with other ids (e.g. {moved[:3]})")
    raise ConfigError(
        f"draft model {draft!r} does not share the tokenizer of target {target!r} "
        f"({len(draft_vocabulary)} vs {len(target_vocabulary)} tokens; " + "; ".join(details) + "); "
        "speculative decoding needs the same vocabulary: pick a draft of the same model family, "
        "or use --draft-layers K or --draft ngram"
    )
