"""Forward passes of language models: the log-probability of each target token given a context.

Pure functions over a :class:`~evalsuite.runtime.models.LoadedModel` and one batch of
``(context ids, target ids)``; batching, ordering and device policy are the caller's. Padding is
on the right and masked, so a row's numbers do not depend on what it is batched with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evalsuite.runtime.encoding import pad_batch
from evalsuite.runtime.models import LoadedModel

Example = tuple[Sequence[int], Sequence[int]]  # (context token ids, target token ids)


def is_seq2seq(lm: LoadedModel) -> bool:
    return bool(getattr(lm.model.config, "is_encoder_decoder", False))


def target_log_probs(lm: LoadedModel, batch: Sequence[Example]) -> list[torch.Tensor]:
    """``log p(target_t | context, target_<t)`` for every target token of every example (float32)."""
    if is_seq2seq(lm):
        return _seq2seq_log_probs(lm, batch)
    return _causal_log_probs(lm, batch)


def _pad_id(lm: LoadedModel) -> int:
    tokenizer = lm.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad or 0)


def _seq2seq_log_probs(lm: LoadedModel, batch: Sequence[Example]) -> list[torch.Tensor]:
    """The encoder reads the context; the decoder is teacher-forced on the target (BARTScore)."""
    pad = _pad_id(lm)
    input_ids, attention_mask = pad_batch([context for context, _ in batch], pad, lm.device)
    labels, _ = pad_batch([target for _, target in batch], pad, lm.device)
    decoder_input_ids = lm.model.prepare_decoder_input_ids_from_labels(labels=labels)
    logits = lm.model(
        input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
    ).logits
    log_probs = logits.float().log_softmax(dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return [log_probs[row, : len(target)].cpu() for row, (_, target) in enumerate(batch)]


def _causal_log_probs(lm: LoadedModel, batch: Sequence[Example]) -> list[torch.Tensor]:
    """Context and target are one sequence; each target token is predicted from the position before."""
    input_ids, attention_mask = pad_batch(
        [[*context, *target] for context, target in batch], _pad_id(lm), lm.device
    )
    logits = lm.model(input_ids=input_ids, attention_mask=attention_mask).logits
    rows = []
    for row, (context, target) in enumerate(batch):
        start = len(context)
        predicted = logits[row, start - 1 : start - 1 + len(target)].float().log_softmax(dim=-1)
        gold = input_ids[row, start : start + len(target)]
        rows.append(predicted.gather(-1, gold.unsqueeze(-1)).squeeze(-1).cpu())
    return rows
