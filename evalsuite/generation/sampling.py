"""Token distributions and the speculative accept/reject rule, as pure tensor functions.

The rule (Leviathan et al. 2023, Chen et al. 2023): draft token ``x ~ q`` is accepted with
probability ``min(1, p(x) / q(x))``; at the first rejection the next token is drawn from
``norm(max(0, p - q))``, and when every draft token is accepted, from ``p`` at the next position.
Each emitted token then follows ``p``, the target's distribution, exactly. ``p`` and ``q`` are both
taken after the same temperature and top-p processing. A deterministic drafter (n-gram lookup)
has ``q = one-hot(x)``: accept with probability ``p(x)``, else draw from ``p`` without ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evalsuite.errors import ConfigError


@dataclass(frozen=True)
class SamplingParams:
    """Temperature 0 is greedy decoding (argmax); otherwise sample after temperature and top-p.

    >>> SamplingParams(temperature=0.0).greedy
    True
    """

    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def token_probabilities(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Probabilities (float32) over the last dimension after temperature and nucleus (top-p) filtering.

    The same operations as transformers' ``TemperatureLogitsWarper`` then ``TopPLogitsWarper``:
    the smallest set of most likely tokens whose mass reaches ``top_p`` is kept (at least one).
    Greedy parameters give the one-hot distribution of the argmax.
    """
    logits = logits.float()
    if params.greedy:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
    scores = logits / params.temperature
    if params.top_p < 1:
        sorted_scores, sorted_index = torch.sort(scores, dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= 1 - params.top_p
        remove_sorted[..., -1] = False  # the most likely token always stays
        remove = remove_sorted.scatter(-1, sorted_index, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores.softmax(dim=-1)


def sample(probabilities: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of ``probabilities`` ``[rows, vocab]``."""
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


def greedy_verify(
    draft_tokens: torch.Tensor, draft_lengths: torch.Tensor, target_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy acceptance: the longest prefix of the draft that equals the target's argmax, plus one token.

    ``draft_tokens`` ``[rows, γ]`` (row ``r`` proposes its first ``draft_lengths[r]``),
    ``target_logits`` ``[rows, γ + 1, vocab]`` (position ``i`` predicts the token after draft ``i``).
    Returns ``(accepted, next_token)``: how many draft tokens each row keeps, and the target's own
    token after them.
    """
    choices = target_logits.argmax(dim=-1)  # [rows, γ + 1]
    accepted = _accepted_prefix(choices[:, : draft_tokens.shape[1]] == draft_tokens, draft_lengths)
    return accepted, choices.gather(1, accepted[:, None]).squeeze(1)


def speculative_verify(
    draft_tokens: torch.Tensor,
    draft_lengths: torch.Tensor,
    draft_probabilities: torch.Tensor | None,
    target_probabilities: torch.Tensor,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Speculative sampling: accept draft token ``x`` with probability ``min(1, p(x)/q(x))``.

    ``draft_probabilities`` ``[rows, γ, vocab]`` is ``q`` (None: the drafter is deterministic,
    ``q`` one-hot); ``target_probabilities`` ``[rows, γ + 1, vocab]`` is ``p`` (both already
    processed by :func:`token_probabilities`). Returns ``(accepted, next_token)``, where
    ``next_token`` is drawn from the residual ``norm(max(0, p - q))`` after a rejection, or from
    ``p`` after the last draft token when all were accepted.
    """
    rows, gamma = draft_tokens.shape
    p_draft = target_probabilities[:, :gamma].gather(-1, draft_tokens[..., None]).squeeze(-1)
    if draft_probabilities is None:
        q_draft = torch.ones_like(p_draft)
    else:
        q_draft = draft_probabilities.gather(-1, draft_tokens[..., None]).squeeze(-1)
    uniforms = torch.rand((rows, gamma), generator=generator, device=draft_tokens.device)
    # u < min(1, p/q)  <=>  u * q < p, for q > 0 (a proposed token always has q > 0).
    accepted = _accepted_prefix(uniforms * q_draft < p_draft, draft_lengths)
    p_next = target_probabilities.gather(
        1, accepted[:, None, None].expand(-1, 1, target_probabilities.shape[-1])
    ).squeeze(1)
    rejected = accepted < draft_lengths
    if bool(rejected.any()):
        at = accepted.clamp(max=max(gamma - 1, 0))
        if draft_probabilities is None:
            q_next = torch.nn.functional.one_hot(
                draft_tokens.gather(1, at[:, None]).squeeze(1), p_next.shape[-1]
            ).to(p_next.dtype)
        else:
            q_next = draft_probabilities.gather(
                1, at[:, None, None].expand(-1, 1, draft_probabilities.shape[-1])
            ).squeeze(1)
        residual = (p_next - q_next).clamp(min=0)
        mass = residual.sum(dim=-1, keepdim=True)
        # p == q to float precision leaves no residual mass; p itself is then the right law.
        residual = torch.where(mass > 0, residual / mass.clamp(min=torch.finfo(mass.dtype).tiny), p_next)
        p_next = torch.where(rejected[:, None], residual, p_next)
    return accepted, sample(p_next, generator)


def _accepted_prefix(agrees: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per row, the number of leading ``True`` within the row's first ``lengths`` entries."""
    if agrees.shape[1] == 0:
        return torch.zeros(agrees.shape[0], dtype=torch.long, device=agrees.device)
    in_range = torch.arange(agrees.shape[1], device=agrees.device)[None, :] < lengths[:, None]
    return (agrees & in_range).long().cumprod(dim=1).sum(dim=1)
