"""The accept/reject rule as a pure function: greedy prefixes, and exact target distributions.

Every distribution test uses a chi-square goodness-of-fit test at significance level ALPHA = 0.001
with a fixed seed (so the statistic and p-value are the same on every run), and checks too that an
always-accept rule fails it: the test is proven able to fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from scipy.stats import chisquare

from evalsuite.errors import ConfigError
from evalsuite.generation.sampling import (
    SamplingParams,
    greedy_verify,
    speculative_verify,
    token_probabilities,
)

ALPHA = 0.001
VOCAB = 12
DRAWS = 100_000


def chi_square_p_value(tokens: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """Goodness of fit of observed ``tokens`` to the distribution ``expected`` (cells with p > 0).

    A token the target gives probability 0 (cut by top-p) makes the fit fail outright (p-value 0).
    """
    counts = torch.bincount(tokens, minlength=expected.numel()).double()
    support = expected > 0
    if counts[~support].sum() > 0:
        return float("inf"), 0.0
    probabilities = expected[support].double()
    # Renormalised in float64 so observed and expected totals agree exactly (scipy checks it).
    result = chisquare(counts[support].numpy(), (probabilities / probabilities.sum() * counts.sum()).numpy())
    return float(result.statistic), float(result.pvalue)


def first_emitted(
    rule: Callable[..., tuple[torch.Tensor, torch.Tensor]], p: torch.Tensor, q: torch.Tensor | None, seed: int
) -> torch.Tensor:
    """The first token emitted after one draft token, over DRAWS independent rows."""
    generator = torch.Generator().manual_seed(seed)
    if q is None:  # a deterministic drafter always proposes the same token
        draft = torch.full((DRAWS,), 3, dtype=torch.long)
        draft_probabilities = None
    else:
        draft = torch.multinomial(q, DRAWS, replacement=True, generator=generator)
        draft_probabilities = q.expand(DRAWS, 1, VOCAB)
    later = torch.full((VOCAB,), 1 / VOCAB)  # p after the draft token (not what is tested here)
    target = torch.stack([p, later]).expand(DRAWS, 2, VOCAB)
    lengths = torch.ones(DRAWS, dtype=torch.long)
    accepted, next_token = rule(draft[:, None], lengths, draft_probabilities, target, generator)
    return torch.where(accepted >= 1, draft, next_token)


def distributions(params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, VOCAB, generator=generator) * 2
    return token_probabilities(logits[0], params), token_probabilities(logits[1], params)


@pytest.mark.parametrize(
    "params",
    [SamplingParams(temperature=1.0), SamplingParams(temperature=0.7, top_p=0.9)],
    ids=["t1", "t0.7-top0.9"],
)
@pytest.mark.parametrize("drafter", ["model", "deterministic"])
def test_accepted_tokens_follow_the_target_distribution(
    params: SamplingParams, drafter: str, always_accept: Callable[..., Any]
) -> None:
    p, q = distributions(params)
    draft_q = q if drafter == "model" else None
    statistic, p_value = chi_square_p_value(first_emitted(speculative_verify, p, draft_q, seed=1), p)
    print(f"{drafter} {params}: real rule chi2={statistic:.2f} p={p_value:.4f}", end="; ")
    assert p_value > ALPHA, f"chi2={statistic:.1f}, p={p_value:.3g}"
    # The same test rejects the always-accept rule: it is able to fail.
    statistic, p_value = chi_square_p_value(first_emitted(always_accept, p, draft_q, seed=1), p)
    print(f"always-accept chi2={statistic:.1f} p={p_value:.3g}")
    assert p_value < ALPHA, f"always-accept passed: chi2={statistic:.1f}, p={p_value:.3g}"


def test_identical_draft_and_target_accept_everything() -> None:
    p, _ = distributions(SamplingParams(temperature=1.0))
    generator = torch.Generator().manual_seed(0)
    draft = torch.multinomial(p, 1000, replacement=True, generator=generator)
    accepted, _ = speculative_verify(
        draft[:, None],
        torch.ones(1000, dtype=torch.long),
        p.expand(1000, 1, VOCAB),
        p.expand(1000, 2, VOCAB),
        generator,
    )
    assert bool((accepted == 1).all())


def test_token_probabilities_match_transformers_warpers() -> None:
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    scores = torch.randn(6, 50, generator=torch.Generator().manual_seed(3)) * 3
    dummy_ids = torch.zeros((6, 1), dtype=torch.long)
    for temperature, top_p in [(1.0, 1.0), (0.7, 0.9), (1.3, 0.5), (0.5, 0.05)]:
        warped = TemperatureLogitsWarper(temperature)(dummy_ids, scores.clone())
        if top_p < 1:
            warped = TopPLogitsWarper(top_p)(dummy_ids, warped)
        ours = token_probabilities(scores, SamplingParams(temperature=temperature, top_p=top_p))
        torch.testing.assert_close(ours, warped.softmax(dim=-1))


def test_greedy_keeps_the_agreeing_prefix_and_adds_the_target_token() -> None:
    # Target argmax per position: row 0 → 5, 6, 7, 8; row 1 → 1, 2, 3, 4.
    choices = torch.tensor([[5, 6, 7, 8], [1, 2, 3, 4]])
    logits = torch.nn.functional.one_hot(choices, 10).float()
    drafts = torch.tensor([[5, 6, 0], [9, 2, 3]])
    accepted, next_token = greedy_verify(drafts, torch.tensor([3, 3]), logits)
    assert accepted.tolist() == [2, 0]
    assert next_token.tolist() == [7, 1]
    # A row proposes only its first `length` tokens: padding never counts as agreement.
    accepted, next_token = greedy_verify(torch.tensor([[5, 6, 7]]), torch.tensor([1]), logits[:1])
    assert (accepted.tolist(), next_token.tolist()) == ([1], [6])
    # No drafts: one plain greedy step.
    accepted, next_token = greedy_verify(
        torch.zeros((2, 0), dtype=torch.long), torch.zeros(2, dtype=torch.long), logits[:, :1]
    )
    assert (accepted.tolist(), next_token.tolist()) == ([0, 0], [5, 1])


@pytest.mark.parametrize(
    ("options", "message"),
    [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")],
)
def test_bad_sampling_parameters_are_config_errors(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SamplingParams(**options)
