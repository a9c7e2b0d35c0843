"""Forward passes of language models: the log-probability of each target token given a context.

Pure functions over a :class:`~evalsuite.runtime.models.LoadedModel` and one batch of
``(context ids, target ids)``; batching, ordering and device policy are the caller's. Padding is
on the right and masked, so a row's numbers do not depend on what it is batched with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from evalsuite.runtime.core import TargetLogProbs
from evalsuite.runtime.encoding import pad_batch
from evalsuite.runtime.models import LoadedModel
from evalsuite.runtime.tokens import likelihood_example

if TYPE_CHECKING:
    from evalsuite.runtime.core import Runtime

Example = tuple[Sequence[int], Sequence[int]]  # (context token ids, target token ids)

# Logits are [tokens, vocabulary] floats: a language model's batch is capped at this many logits
# (512 MiB of float32), whatever the token budget, so a 50k-word vocabulary cannot exhaust memory.
LOGIT_BUDGET = 1 << 27


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


def shared_context_log_probs(
    lm: LoadedModel, context: Sequence[int], targets: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """Causal LM, many targets after one context: the context runs once and its KV cache is shared.

    Scoring N candidates of one source (system summaries, sampled answers) then costs one pass
    over the source instead of N; numbers equal :func:`target_log_probs` up to float rounding.
    """
    device = lm.device
    context_out = lm.model(input_ids=torch.tensor([list(context)], device=device), use_cache=True)
    first = context_out.logits[0, -1].float().log_softmax(dim=-1)  # predicts each target's first token
    cache = context_out.past_key_values
    cache.batch_repeat_interleave(len(targets))
    input_ids, mask = pad_batch(targets, _pad_id(lm), device)
    rows, width = input_ids.shape
    attention_mask = torch.cat(
        [torch.ones((rows, len(context)), dtype=mask.dtype, device=device), mask], dim=1
    )
    positions = torch.arange(len(context), len(context) + width, device=device).expand(rows, width)
    logits = lm.model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, past_key_values=cache
    ).logits
    results = []
    for row, target in enumerate(targets):
        log_probs = torch.empty(len(target))
        if target:
            log_probs[0] = first[target[0]]
            rest = logits[row, : len(target) - 1].float().log_softmax(dim=-1)
            log_probs[1:] = rest.gather(-1, input_ids[row, 1 : len(target)].unsqueeze(-1)).squeeze(-1).cpu()
        results.append(log_probs)
    return results


def score_targets(rt: Runtime, model: str, pairs: Sequence[tuple[str, str]]) -> list[TargetLogProbs]:
    """:meth:`Runtime.target_log_probs <evalsuite.runtime.Runtime.target_log_probs>`: each distinct
    pair scored once, in the runtime's batches; a causal LM's context shared by several targets
    runs once for all of them.
    """
    lm = rt.language_model(model)
    seq2seq = is_seq2seq(lm)
    unique = list(dict.fromkeys(pairs))
    examples = []
    for context, target in unique:
        context_ids, target_ids, cut = likelihood_example(
            lm.tokenizer, lm.max_length, context, target, seq2seq=seq2seq
        )
        if cut:
            rt.count_truncation(model, cut, lm.max_length)
        examples.append((context_ids, target_ids))
    vocabulary = int(lm.model.config.get_text_config().vocab_size)
    token_budget = max(1, min(rt.token_budget, LOGIT_BUDGET // vocabulary))

    def compute(batch: list[Any]) -> list[object]:
        return list(target_log_probs(lm, batch))

    def cost(example: tuple[list[int], list[int]]) -> int:
        # Padded positions that produce logits: the decoder's, or the whole causal sequence.
        context, target = example
        return max(len(context), len(target)) if seq2seq else len(context) + len(target)

    # Causal LMs share a context's pass among its targets (the candidates of one source).
    groups: dict[tuple[int, ...], list[int]] = {}
    if not seq2seq:
        for index, (context_ids, _) in enumerate(examples):
            groups.setdefault(tuple(context_ids), []).append(index)
    shared = {prefix: indices for prefix, indices in groups.items() if len(indices) > 1}
    alone = [i for i in range(len(examples)) if tuple(examples[i][0]) not in shared]
    outputs = rt.batched(
        [examples[i] for i in alone],
        compute,
        lengths=[cost(examples[i]) for i in alone],
        token_budget=token_budget,
    )
    found = dict(zip(alone, outputs, strict=True))
    for prefix, indices in shared.items():

        def after_prefix(batch: list[Any], prefix: tuple[int, ...] = prefix) -> list[object]:
            return list(shared_context_log_probs(lm, prefix, batch))

        targets = [examples[i][1] for i in indices]
        found.update(zip(indices, rt.batched(targets, after_prefix, token_budget=token_budget), strict=True))
    rows = [found[i] for i in range(len(examples))]
    scored = {
        pair: TargetLogProbs(lm.tokenizer.convert_ids_to_tokens(target), row)  # type: ignore[arg-type]
        for pair, (_, target), row in zip(unique, examples, rows, strict=True)
    }
    return [scored[pair] for pair in pairs]


def next_token_log_probs(lm: LoadedModel, batch: Sequence[Sequence[int]]) -> torch.Tensor:
    """``log p(next token | prompt)`` over the vocabulary for each prompt, float32 [batch, vocab].

    Only each prompt's last position goes through the output layer (not every position's logits).
    """
    input_ids, attention_mask = pad_batch(batch, _pad_id(lm), lm.device)
    last = attention_mask.sum(dim=1) - 1
    rows = torch.arange(len(batch), device=lm.device)
    base, head = lm.model.base_model, lm.model.get_output_embeddings()
    if base is lm.model or head is None:  # no separable head: the full logits, read at the last position
        logits = lm.model(input_ids=input_ids, attention_mask=attention_mask).logits[rows, last]
    else:
        hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = head(hidden[rows, last])
    return logits.float().log_softmax(dim=-1).cpu()


def greedy_continuation(lm: LoadedModel, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
    """The tokens a causal LM writes after ``prompt`` by greedy decoding (stops at end of sequence)."""
    input_ids = torch.tensor([list(prompt)], dtype=torch.long, device=lm.device)
    output = lm.model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=_pad_id(lm),
    )
    return [int(token) for token in output[0, len(prompt) :].tolist()]
