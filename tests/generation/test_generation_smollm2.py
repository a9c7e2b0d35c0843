"""The real packaged SmolLM2-135M-Instruct: greedy speculative output equals its own greedy generate."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from evalsuite.generation.generator import TextGenerator
from evalsuite.generation.speculative import GenerationOptions

MAX_NEW = 24
PROMPTS = [
    "What is the capital of France?",
    "Summarise in one sentence: The city council voted on Tuesday to build a new public library in the "
    "town centre. Construction will start next spring and the library is expected to open in 2027.",
]

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def expected(hf_greedy: Callable[..., list[int]]) -> list[list[int]]:
    generator = TextGenerator("smollm2", draft="none", device="cpu", dtype="float32")
    eos = generator.target.tokenizer.eos_token_id
    return [hf_greedy(generator.target.model, generator.encode_prompt(p), MAX_NEW, eos) for p in PROMPTS]


@pytest.mark.parametrize(("draft", "draft_layers"), [("none", None), ("ngram", None), (None, 20)])
def test_greedy_speculative_output_is_smollm2s_own(
    expected: list[list[int]], draft: str | None, draft_layers: int | None
) -> None:
    generator = TextGenerator(
        "smollm2", draft=draft, draft_layers=draft_layers, device="cpu", dtype="float32"
    )
    completions, stats = generator.generate(PROMPTS, GenerationOptions(max_new_tokens=MAX_NEW, batch_size=2))
    assert [completion.sequences[0].token_ids for completion in completions] == expected
    assert "Paris" in completions[0].prediction
    if draft == "ngram":
        assert stats.draft_accepted > 0  # the summary copies from its passage


def test_sampled_candidates_carry_their_log_probabilities() -> None:
    generator = TextGenerator("smollm2", draft="ngram", device="cpu", dtype="float32")
    options = GenerationOptions(max_new_tokens=12, temperature=1.0, top_p=0.95, num_samples=3, seed=1)
    [completion], _ = generator.generate(PROMPTS[:1], options)
    assert len(completion.samples) == len(completion.sample_logprobs) == 3
    assert all(-20 < value <= 0 for value in completion.sample_logprobs)
