"""A judge on a local causal LM through the runtime (offline default: the packaged SmolLM2-135M-Instruct).

It reads the next-token distribution directly: one batched forward pass gives every request's first
answer token with its top alternatives and, always, the probability of each answer label's tokens
(``"yes"``, ``"Yes"``, ``" yes"``...), so a verdict exists even when the label is not the model's
first choice. A request for more than one token (an explanation) is continued by greedy decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evalsuite.judges.backends import BackendStats, JudgeReply, JudgeRequest, TokenChoice
from evalsuite.registry import ScoreFailure

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

__all__ = ["LocalBackend", "chat_prompt_ids", "label_token_ids"]


def chat_prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` in the model's chat template, ready for the assistant's answer;
    a tokenizer without a template gets the messages as plain text ending with ``Answer:``."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return [int(token) for token in ids]
    text = "\n\n".join(message["content"] for message in messages) + "\nAnswer:"
    return [int(token) for token in tokenizer(text, add_special_tokens=True)["input_ids"]]


def label_token_ids(tokenizer: Any, labels: Sequence[str]) -> dict[int, str]:
    """Every single token that spells a label as an answer's first token: as written, lower- and
    capitalised, with and without a leading space."""
    found: dict[int, str] = {}
    for label in labels:
        for variant in dict.fromkeys((label, label.lower(), label.capitalize(), label.upper())):
            for text in (variant, " " + variant):
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                if len(ids) == 1:
                    found.setdefault(int(ids[0]), label)
    return found


class LocalBackend:
    """Judge requests answered by a causal LM preset, path or hub id on ``runtime``."""

    def __init__(self, runtime: Runtime, model: str = "smollm2", *, top_logprobs: int = 20) -> None:
        self.runtime = runtime
        self.model = model
        self.top_logprobs = top_logprobs
        self.stats = BackendStats()

    def describe(self) -> dict[str, Any]:
        return {"backend": "local", "model": self.model}

    def complete(self, requests: Sequence[JudgeRequest]) -> list[JudgeReply | ScoreFailure]:
        import torch

        if not requests:
            return []
        lm = self.runtime.language_model(self.model)
        tokenizer = lm.tokenizer
        prompts = [chat_prompt_ids(tokenizer, request.messages) for request in requests]
        replies: list[JudgeReply | ScoreFailure] = [
            ScoreFailure(f"the prompt has {len(ids)} tokens, over {self.model}'s limit of {lm.max_length}")
            for ids in prompts
        ]
        fits = [i for i, ids in enumerate(prompts) if len(ids) < lm.max_length]
        spellings: dict[tuple[str, ...], dict[int, str]] = {}
        rows = self.runtime.next_token_log_probs(self.model, [prompts[i] for i in fits])
        for i, row in zip(fits, rows, strict=True):
            request = requests[i]
            if request.labels not in spellings:  # tokenised once per label set, not per record
                spellings[request.labels] = label_token_ids(tokenizer, request.labels)
            wanted = spellings[request.labels]
            top = torch.topk(row, min(self.top_logprobs, row.numel())).indices.tolist()
            alternatives: dict[str, float] = {}
            for token in dict.fromkeys([*top, *wanted]):  # tokens that read the same add up
                spelled = tokenizer.decode([token])
                before = torch.tensor(alternatives.get(spelled, float("-inf")))
                alternatives[spelled] = float(torch.logaddexp(before, row[token]))
            first = int(row.argmax())
            written = [first]
            if request.max_tokens > 1:
                written += self.runtime.greedy_continuation(
                    self.model, [*prompts[i], first], request.max_tokens - 1
                )
            text = tokenizer.decode(written, skip_special_tokens=True)
            replies[i] = JudgeReply(
                text, (TokenChoice(tokenizer.decode([first]), alternatives),), len(prompts[i]), len(written)
            )
        self.stats.add(
            requests=len(fits),
            failures=len(requests) - len(fits),
            prompt_tokens=sum(len(prompts[i]) for i in fits),
            completion_tokens=sum(r.completion_tokens for r in replies if isinstance(r, JudgeReply)),
        )
        return replies
