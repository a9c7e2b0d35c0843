"""Token ids for the runtime's model calls, cut to a model's limit, with a count of what was cut.

Pure functions over a tokenizer (no torch); the :class:`~evalsuite.runtime.Runtime` counts the
truncations in its stats and warns once per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalsuite.errors import ConfigError

PairRow = list[tuple[int, int]]  # (token id, segment id) per token of a (premise, hypothesis) pair


def truncated_ids(tokenizer: Any, texts: Sequence[str], limit: int) -> tuple[list[list[int]], int]:
    """Token ids with special tokens, cut to ``limit``; and how many texts were longer than that."""
    ids: list[list[int]] = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=limit)[
        "input_ids"
    ]
    at_limit = [i for i, row in enumerate(ids) if len(row) >= limit]
    if not at_limit:
        return ids, 0
    full = tokenizer([texts[i] for i in at_limit], add_special_tokens=True, verbose=False)["input_ids"]
    return ids, sum(len(row) > limit for row in full)


def pair_rows(tokenizer: Any, pairs: Sequence[tuple[str, str]], limit: int) -> tuple[list[PairRow], int]:
    """Token and segment ids of each pair; over-long premises are cut, never hypotheses.

    Returns the rows and how many pairs were over ``limit``.
    """
    premises, hypotheses = [p for p, _ in pairs], [h for _, h in pairs]
    full = tokenizer(premises, hypotheses, truncation=False, verbose=False, return_token_type_ids=True)
    too_long = [i for i, ids in enumerate(full["input_ids"]) if len(ids) > limit]
    if too_long:
        long_premises = [premises[i] for i in too_long]
        long_hypotheses = [hypotheses[i] for i in too_long]
        options = {"max_length": limit, "return_token_type_ids": True}
        try:  # the premise (a source document) is what may be cut...
            cut = tokenizer(long_premises, long_hypotheses, truncation="only_first", **options)
        except Exception:  # noqa: BLE001 - ...unless the hypothesis alone is over the limit
            cut = tokenizer(long_premises, long_hypotheses, truncation="longest_first", **options)
        for row, i in enumerate(too_long):
            full["input_ids"][i] = cut["input_ids"][row]
            full["token_type_ids"][i] = cut["token_type_ids"][row]
    types = full.get("token_type_ids") or [[0] * len(ids) for ids in full["input_ids"]]
    rows = [list(zip(ids, kinds, strict=True)) for ids, kinds in zip(full["input_ids"], types, strict=True)]
    return rows, len(too_long)


def start_token(tokenizer: Any) -> int:
    """A token to predict the first target token from when a causal LM gets no context."""
    for token in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token is not None:
            return int(token)
    raise ConfigError("a causal LM with neither a BOS nor an EOS token needs a non-empty context")


def likelihood_example(
    tokenizer: Any, limit: int, context: str, target: str, *, seq2seq: bool
) -> tuple[list[int], list[int], int]:
    """Token ids of (context, target) cut to the model's limit, and how many texts were cut.

    Seq2seq: each side at its end. Causal (one sequence): the context in its middle, keeping its
    start (instructions) and its end (where the answer begins); the target only when it alone is
    over the limit.
    """
    if seq2seq:
        context_ids = tokenizer(context, verbose=False)["input_ids"]
        target_ids = tokenizer(target, verbose=False)["input_ids"]
        cut = int(len(context_ids) > limit) + int(len(target_ids) > limit)
        return context_ids[:limit], target_ids[:limit], cut
    context_ids = tokenizer(context, verbose=False)["input_ids"] or [start_token(tokenizer)]
    target_ids = tokenizer(target, add_special_tokens=False, verbose=False)["input_ids"]
    if len(context_ids) + len(target_ids) <= limit:
        return context_ids, target_ids, 0
    target_ids = target_ids[: limit - 2]
    room = limit - len(target_ids)
    head = room // 2
    return [*context_ids[:head], *context_ids[len(context_ids) - (room - head) :]], target_ids, 1
