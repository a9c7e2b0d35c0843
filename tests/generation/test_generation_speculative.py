"""The batched speculative loop on tiny random Llamas: greedy identity and exact sampling.

Greedy output must equal the target's own ``generate(do_sample=False)`` token for token, per prompt,
for every drafter (including one always right and one always wrong), for batches of prompts of
different lengths. Sampled output must follow the target's distribution: chi-square test at
ALPHA = 0.001 with fixed seeds, which the always-accept rule must fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from scipy.stats import chisquare

from evalsuite.errors import ConfigError
from evalsuite.generation import speculative
from evalsuite.generation.drafters import (
    DraftContext,
    Drafter,
    ModelDrafter,
    NgramDrafter,
    NoDrafter,
    Proposal,
    layer_skip_model,
)
from evalsuite.generation.sampling import SamplingParams, token_probabilities
from evalsuite.generation.speculative import GenerationOptions, SpeculativeDecoder

ALPHA = 0.001
EOS = 2  # the tiny models' end-of-sequence id (conftest.build_tiny_llama)
VOCAB = 64
PROMPT_LENGTHS = (3, 11, 7, 1, 20)
MAX_NEW = 30


class AlwaysWrong(Drafter):
    """Proposes, at every position, a token the target's greedy choice is not (its argmax + 1)."""

    name = "always-wrong"

    def __init__(self, target: Any) -> None:
        self._oracle = ModelDrafter(target, name="oracle", relative_cost=0.0)

    def start(self) -> None:
        self._oracle.start()

    def propose(self, context: DraftContext) -> Proposal:
        right = self._oracle.propose(context)
        return Proposal((right.tokens + 1) % context.vocab_size, right.lengths)


def prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(5)
    return [torch.randint(3, VOCAB, (length,), generator=generator).tolist() for length in PROMPT_LENGTHS]


def drafters(target: Any, tiny_llama: Callable[..., Any]) -> dict[str, Drafter]:
    return {
        "none": NoDrafter(),
        "ngram": NgramDrafter(min_ngram=1),
        "always-right": ModelDrafter(target, name="same model", relative_cost=0.0),
        "always-wrong": AlwaysWrong(target),
        "other-model": ModelDrafter(tiny_llama(seed=1, layers=1), name="other", relative_cost=0.3),
        "layer-skip": ModelDrafter(layer_skip_model(target, 1), name="layer-skip:1", relative_cost=0.4),
    }


DRAFTERS = ["none", "ngram", "always-right", "always-wrong", "other-model", "layer-skip"]


@pytest.fixture(scope="module")
def target(tiny_llama: Callable[..., Any]) -> Any:
    return tiny_llama(seed=0, layers=3)


@pytest.fixture(scope="module")
def expected(target: Any, hf_greedy: Callable[..., list[int]]) -> list[list[int]]:
    return [hf_greedy(target, prompt, MAX_NEW, EOS) for prompt in prompts()]


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive-gamma", "fixed-gamma"])
@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("name", DRAFTERS)
def test_greedy_output_is_the_targets_own_greedy_output(
    target: Any,
    tiny_llama: Callable[..., Any],
    expected: list[list[int]],
    name: str,
    batch_size: int,
    adaptive: bool,
) -> None:
    decoder = SpeculativeDecoder(target, drafters(target, tiny_llama)[name])
    options = GenerationOptions(
        max_new_tokens=MAX_NEW,
        stop_token_ids=(EOS,),
        batch_size=batch_size,
        max_draft_tokens=4,
        adaptive=adaptive,
    )
    outputs, stats = decoder.decode(prompts(), options)
    assert [rows[0].token_ids for rows in outputs] == expected
    if name == "always-right":
        assert stats.acceptance_rate == 1.0
        assert stats.tokens_per_row_pass > 2
    if name == "always-wrong":
        assert stats.acceptance_rate == 0.0
        assert stats.tokens_per_row_pass == 1.0
    if name == "none":
        assert stats.draft_proposed == 0
        assert stats.tokens_per_row_pass == 1.0


def test_stop_tokens_and_the_length_limit_end_each_row_on_its_own(
    target: Any, expected: list[list[int]]
) -> None:
    assert any(EOS in tokens for tokens in expected), "the fixture should stop some rows at EOS"
    decoder = SpeculativeDecoder(target, ModelDrafter(target, name="same", relative_cost=0.0))
    for limit in (1, 2, 5, 13):
        options = GenerationOptions(
            max_new_tokens=limit, stop_token_ids=(EOS,), batch_size=5, max_draft_tokens=8, adaptive=False
        )
        outputs, _ = decoder.decode(prompts(), options)
        for rows, reference in zip(outputs, expected, strict=True):
            generated = rows[0]
            assert len(generated.token_ids) <= limit
            cut = reference[:limit]
            if EOS in cut:
                cut = cut[: cut.index(EOS) + 1]
            assert generated.token_ids == cut
            assert generated.finish_reason == ("stop" if cut[-1] == EOS else "length")
    # An extra stop token ends only the rows that produce it.
    stop = expected[1][3]
    options = GenerationOptions(max_new_tokens=MAX_NEW, stop_token_ids=(EOS, stop), batch_size=5)
    outputs, _ = decoder.decode(prompts(), options)
    for rows, reference in zip(outputs, expected, strict=True):
        ends = [i for i, token in enumerate(reference) if token in (EOS, stop)]
        assert rows[0].token_ids == (reference[: ends[0] + 1] if ends else reference)


def test_token_logprobs_are_the_targets_own(
    target: Any, reference_logits: Callable[..., torch.Tensor]
) -> None:
    decoder = SpeculativeDecoder(target, NgramDrafter(min_ngram=1))
    options = GenerationOptions(max_new_tokens=12, temperature=1.5, top_p=0.9, num_samples=3, seed=4)
    outputs, _ = decoder.decode(prompts()[:2], options)
    for prompt, rows in zip(prompts()[:2], outputs, strict=True):
        for generated in rows:
            logits = reference_logits(target, [*prompt, *generated.token_ids])
            log_probs = logits[len(prompt) - 1 : -1].log_softmax(dim=-1)  # temperature 1, no top-p
            expected = log_probs.gather(1, torch.tensor(generated.token_ids)[:, None]).squeeze(1)
            torch.testing.assert_close(torch.tensor(generated.token_logprobs), expected, atol=1e-4, rtol=1e-4)
            assert generated.mean_logprob == pytest.approx(float(expected.mean()), abs=1e-4)


def test_same_seed_same_samples_other_seed_other_samples(target: Any) -> None:
    decoder = SpeculativeDecoder(
        target, ModelDrafter(layer_skip_model(target, 1), name="ls", relative_cost=0.4)
    )

    def run(seed: int) -> list[list[int]]:
        options = GenerationOptions(
            max_new_tokens=10, temperature=1.0, num_samples=4, seed=seed, batch_size=2
        )
        outputs, _ = decoder.decode(prompts()[:3], options)
        return [generated.token_ids for rows in outputs for generated in rows]

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_draft_tokens": -1}, "between 0 and 64"),
        ({"max_draft_tokens": 65}, "between 0 and 64"),
        ({"num_samples": 3}, "temperature > 0"),
        ({"num_samples": 0}, "samples"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"top_p": 0.0}, "top_p"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GenerationOptions(**options)


# -- the target distribution, end to end --------------------------------------------------------

SMALL_VOCAB = 16
DIST_PROMPT = [3, 7, 5]
SAMPLINGS = [SamplingParams(temperature=1.0), SamplingParams(temperature=0.9, top_p=0.95)]


def exact_second_and_third(target: Any, sampling: SamplingParams) -> torch.Tensor:
    """P(token 2, token 3) under the processed target distribution, by enumerating token 1 and 2."""
    vocab = SMALL_VOCAB
    with torch.inference_mode():
        p1 = token_probabilities(target(torch.tensor([DIST_PROMPT])).logits[0, -1], sampling)
        two = torch.tensor([[*DIST_PROMPT, a] for a in range(vocab)])
        p2 = token_probabilities(target(two).logits[:, -1], sampling)
        three = torch.tensor([[*DIST_PROMPT, a, b] for a in range(vocab) for b in range(vocab)])
        p3 = token_probabilities(target(three).logits[:, -1], sampling).view(vocab, vocab, vocab)
    return (p1[:, None, None] * p2[:, :, None] * p3).sum(dim=0).double()


def chi_square(target: Any, draft: Any, sampling: SamplingParams) -> tuple[float, float]:
    """Tokens 2 and 3 of 8 seeds × 2500 samples (both pass through the accept rule, γ = 2)."""
    counts = torch.zeros(SMALL_VOCAB, SMALL_VOCAB, dtype=torch.float64)
    for seed in range(8):
        decoder = SpeculativeDecoder(target, ModelDrafter(draft, name="draft", relative_cost=0.1))
        options = GenerationOptions(
            max_new_tokens=3, temperature=sampling.temperature, top_p=sampling.top_p,
            num_samples=2500, seed=seed, max_draft_tokens=2, adaptive=False, batch_size=1,
        )  # fmt: skip
        outputs, _ = decoder.decode([DIST_PROMPT], options)
        for generated in outputs[0]:
            counts[generated.token_ids[1], generated.token_ids[2]] += 1
    expected = exact_second_and_third(target, sampling).flatten()
    observed = counts.flatten()
    if observed[expected == 0].sum() > 0:
        return float("inf"), 0.0
    # Cells expected fewer than 5 times are pooled, as the chi-square approximation needs.
    small = expected * observed.sum() < 5
    observed = torch.cat([observed[~small], observed[small].sum()[None]])
    expected = torch.cat([expected[~small], expected[small].sum()[None]])
    result = chisquare(observed.numpy(), (expected / expected.sum() * observed.sum()).numpy())
    return float(result.statistic), float(result.pvalue)


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=["t1", "t0.9-top0.95"])
def test_samples_follow_the_target_distribution(
    tiny_llama: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    sampling: SamplingParams,
    always_accept: Callable[..., Any],
) -> None:
    # Wide initialisation: peaked distributions, and a draft far from the target.
    target = tiny_llama(seed=0, vocab_size=SMALL_VOCAB, hidden=16, initializer_range=0.3)
    draft = tiny_llama(seed=1, vocab_size=SMALL_VOCAB, hidden=16, initializer_range=0.3)
    statistic, p_value = chi_square(target, draft, sampling)
    print(f"{sampling}: speculative rule: chi2={statistic:.2f}, p={p_value:.4f}")
    assert p_value > ALPHA, f"chi2={statistic:.1f}, p={p_value:.3g}"
    monkeypatch.setattr(speculative, "speculative_verify", always_accept)
    statistic, p_value = chi_square(target, draft, sampling)
    print(f"always-accept: chi2={statistic:.1f}, p={p_value:.3g}")
    assert p_value < ALPHA, f"always-accept passed: chi2={statistic:.1f}, p={p_value:.3g}"
