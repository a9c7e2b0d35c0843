"""The local judge: ratings read from a causal LM's next-token distribution.

On a tiny random Llama (MiniLM vocabulary, no chat template), ratings in batches of 1 and of many
equal an independent computation: the unpadded prompt alone through the model, softmax at its last
position, p(k) summed over the tokens that spell each rating. A real SmolLM2 smoke test checks the
packaged default and its chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from evalsuite.api import Scorer
from evalsuite.judges import JudgeRequest, LocalBackend, load_template
from evalsuite.judges.local import chat_prompt_ids, label_token_ids
from evalsuite.runtime import Runtime
from evalsuite.testing import float_tolerance, save_tiny_llama_with_minilm_tokenizer

TOLERANCE = float_tolerance("float32", style="approx")
RECORDS = [
    {"id": "a", "prompt": "What is the capital of France?", "prediction": "Paris."},
    {
        "id": "b",
        "prompt": "Name a prime number.",
        "prediction": "Nine is a prime number, as is every odd number.",
    },
    {"id": "c", "prompt": "Spell 'cat' backwards.", "prediction": "tac"},
    {"id": "d", "prompt": "Who wrote Hamlet? Answer briefly.", "prediction": "William Shakespeare wrote it."},
]


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A wide initialisation so that the rating tokens' probabilities differ visibly between prompts.
    return save_tiny_llama_with_minilm_tokenizer(tmp_path_factory.mktemp("tiny-judge"), seed=3, layers=2)


def _independent_ratings(model_dir: Path, records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(most likely rating, G-Eval weighted rating) per record, without evalsuite's batching."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    template = load_template("quality", "direct").with_scale(5)
    expected = []
    for record in records:
        text = f"{template.system}\n\n{template.render(record)}\nAnswer:"
        ids = tokenizer(text)["input_ids"]
        with torch.inference_mode():
            probabilities = model(input_ids=torch.tensor([ids])).logits[0, -1].float().softmax(-1)
        mass = {}
        for rating in range(1, 6):
            # The BERT vocabulary spells a digit one way (no leading-space or case variants).
            [token] = tokenizer(str(rating), add_special_tokens=False)["input_ids"]
            mass[rating] = float(probabilities[token])
        total = sum(mass.values())
        weighted = sum(rating * p / total for rating, p in mass.items())
        expected.append((float(max(mass, key=mass.__getitem__)), weighted))
    return expected


@pytest.mark.parametrize("batch_size", [1, 64])
def test_local_ratings_equal_an_independent_computation(tiny_judge_dir: Path, batch_size: int) -> None:
    config = {"llm_judge": {"model": str(tiny_judge_dir), "kind": "direct"}}
    with Scorer(config, batch_size=batch_size, cache=False, device="cpu") as scorer:
        results = scorer.score(RECORDS)
    expected = _independent_ratings(tiny_judge_dir, RECORDS)
    assert results["llm_judge_rating"].to_list() == [rating for rating, _ in expected]
    assert results["llm_judge_weighted"].to_list() == pytest.approx([w for _, w in expected], **TOLERANCE)
    distributions = results["llm_judge_distribution"].to_list()
    assert [item["label"] for item in distributions[0]] == ["1", "2", "3", "4", "5"]
    assert sum(item["probability"] for item in distributions[0]) == pytest.approx(1.0, **TOLERANCE)


def test_label_tokens_cover_case_and_space_variants_that_are_single_tokens(tiny_judge_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_judge_dir)
    found = label_token_ids(tokenizer, ("yes", "no"))
    assert set(found.values()) == {"yes", "no"}
    assert all(len(tokenizer.decode([token]).strip()) in (2, 3) for token in found)


def test_a_prompt_over_the_models_limit_is_a_failure_not_a_crash(tiny_judge_dir: Path) -> None:
    backend = LocalBackend(Runtime(device="cpu"), str(tiny_judge_dir))
    long = JudgeRequest(({"role": "user", "content": "word " * 400},), 1, ("yes", "no"))
    short = JudgeRequest(
        ({"role": "user", "content": "Is the sky blue? Answer yes or no."},), 1, ("yes", "no")
    )
    failed, answered = backend.complete([long, short])
    assert "over" in getattr(failed, "reason", "")
    assert "limit of 256" in failed.reason
    assert answered.tokens[0].top_logprobs  # type: ignore[union-attr]
    assert backend.stats.failures == 1
    assert backend.stats.requests == 1


@pytest.mark.model
def test_smollm2_judges_offline_with_its_chat_template() -> None:
    runtime = Runtime(device="cpu")
    tokenizer = runtime.language_model("smollm2").tokenizer
    ids = chat_prompt_ids(tokenizer, [{"role": "user", "content": "Hello"}])
    assert tokenizer.decode(ids).rstrip().endswith("<|im_start|>assistant")
    records = [
        {
            "id": "good",
            "source": "The Eiffel Tower is in Paris.",
            "prediction": "The Eiffel Tower is in Paris.",
        },
        {
            "id": "bad",
            "source": "The Eiffel Tower is in Paris.",
            "prediction": "The Eiffel Tower is in Rome.",
        },
    ]
    with Scorer({"llm_judge": {"kind": "binary", "explain": True}}, cache=False, device="cpu") as scorer:
        results = scorer.score(records)
    probabilities = results["llm_judge_probability"].to_list()
    assert all(0.0 < p < 1.0 for p in probabilities)
    assert all(
        len(reply) > 3 for reply in results["llm_judge_reply"].to_list()
    )  # an explanation, not one token


def test_a_used_judge_metric_pickles_without_its_backend_for_ray_workers(tiny_judge_dir: Path) -> None:
    import pickle

    with Scorer({"llm_judge": {"model": str(tiny_judge_dir)}}, cache=False, device="cpu") as scorer:
        before = scorer.score(RECORDS[:2])
        [metric] = scorer.metrics
        assert metric.usage()["requests"] == 2
        copy = pickle.loads(pickle.dumps(metric))
    assert copy.config == metric.config
    assert copy.usage()["requests"] == 0  # a fresh backend, built on first use where it runs
    with Scorer([copy], cache=False, device="cpu") as scorer:
        again = scorer.score(RECORDS[:2])
    assert again["llm_judge_weighted"].to_list() == pytest.approx(
        before["llm_judge_weighted"].to_list(), **TOLERANCE
    )
