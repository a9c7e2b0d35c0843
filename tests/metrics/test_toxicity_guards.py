"""Generative guard models through ``toxicity``: P(unsafe) and categories from the verdict token.

Tiny random Llamas stand in for Llama Guard, ShieldGemma and Granite Guardian (the same code path:
a causal LM, a prompt in the family's format, the next-token distribution). The reference reads the
model's own logits for the unpadded prompt, one record at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError
from evalsuite.runtime.guards import GUARDS, guard_prompts, llama_guard_code_prefix
from evalsuite.testing import float_tolerance, save_tiny_llama_with_minilm_tokenizer
from metrics.toxicity import Toxicity

TOLERANCE = float_tolerance("float32", style="approx")
RECORDS = [
    {
        "id": "a",
        "prompt": "How do I bake bread?",
        "prediction": "Mix flour, water, yeast and salt, then bake.",
    },
    {"id": "b", "prediction": "People like them should be kept out of our neighbourhoods."},
    {
        "id": "c",
        "prompt": "Tell me a joke.",
        "prediction": "Why did the chicken cross the road? To get across.",
    },
]


@pytest.fixture(scope="module")
def tiny_guard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama_with_minilm_tokenizer(
        tmp_path_factory.mktemp("tiny-guard"), seed=5, layers=2, max_positions=1024
    )


def _next_token_probabilities(model_dir: Path, text: str) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float().softmax(-1)


def _token(model_dir: Path, word: str) -> int:
    return int(AutoTokenizer.from_pretrained(model_dir)(word, add_special_tokens=False)["input_ids"][0])


def test_the_llama_guard_prompt_is_the_published_format() -> None:
    spec = GUARDS["llama-guard-3-1b"]
    [with_prompt] = guard_prompts(spec, "How do I bake bread?", "Mix and bake.")
    assert with_prompt.startswith(
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nTask: Check if"
    )
    assert "in 'Agent' messages" in with_prompt
    assert "S1: Violent Crimes.\nS2: Non-Violent Crimes." in with_prompt
    assert "S13: Elections.\n<END UNSAFE CONTENT CATEGORIES>" in with_prompt  # 3-1B has no S14
    assert "User: How do I bake bread?\n\nAgent: Mix and bake.\n\n<END CONVERSATION>" in with_prompt
    assert with_prompt.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    [alone] = guard_prompts(spec, None, "Mix and bake.")
    assert "in 'User' messages" in alone
    assert "User: Mix and bake.\n\n<END CONVERSATION>" in alone
    assert "S14: Code Interpreter Abuse." in guard_prompts(GUARDS["llama-guard-3-8b"], None, "x")[0]


def test_llama_guard_unsafe_and_category_columns_equal_the_models_own_probabilities(tiny_guard: Path) -> None:
    metric = Toxicity(model=str(tiny_guard), guard="llama-guard-3-1b")
    assert metric.columns[:3] == [
        "toxicity_unsafe",
        "toxicity_s1_violent_crimes",
        "toxicity_s2_non_violent_crimes",
    ]
    assert len(metric.columns) == 14
    with Scorer([metric], cache=False, device="cpu") as scorer:
        results = scorer.score(RECORDS)
    spec = GUARDS["llama-guard-3-1b"]
    unsafe, safe = _token(tiny_guard, "unsafe"), _token(tiny_guard, "safe")
    digits = [_token(tiny_guard, str(k)) for k in range(1, 14)]
    for i, record in enumerate(RECORDS):
        [text] = guard_prompts(spec, record.get("prompt"), record["prediction"])
        first = _next_token_probabilities(tiny_guard, text)
        p_unsafe = float(first[unsafe] / (first[unsafe] + first[safe]))
        codes = _next_token_probabilities(tiny_guard, llama_guard_code_prefix(text))[digits]
        expected = [p_unsafe, *(p_unsafe * codes / codes.sum()).tolist()]
        got = [results[column][i] for column in metric.columns]
        assert got == pytest.approx(expected, **TOLERANCE)


@pytest.mark.parametrize("family", ["shieldgemma-2b", "granite-guardian-3.1-2b"])
def test_yes_no_guards_ask_once_per_category_and_take_the_largest(tiny_guard: Path, family: str) -> None:
    metric = Toxicity(model=str(tiny_guard), guard=family, sentences=False)
    spec = GUARDS[family]
    with Scorer([metric], batch_size=2, cache=False, device="cpu") as scorer:
        results = scorer.score(RECORDS)
    yes, no = _token(tiny_guard, "Yes"), _token(tiny_guard, "No")
    for i, record in enumerate(RECORDS):
        texts = guard_prompts(spec, record.get("prompt"), record["prediction"])
        assert len(texts) == len(spec.categories)
        per_category = []
        for text in texts:
            probabilities = _next_token_probabilities(tiny_guard, text)
            per_category.append(float(probabilities[yes] / (probabilities[yes] + probabilities[no])))
        got = [results[column][i] for column in metric.columns]
        assert got == pytest.approx([max(per_category), *per_category], **TOLERANCE)


def test_the_prompt_field_changes_what_a_guard_judges(tiny_guard: Path) -> None:
    metric = Toxicity(model=str(tiny_guard), guard="shieldgemma-2b", sentences=False)
    assert "prompt" in metric.input_fields  # the cache keys on it too
    answer = "Mix flour, water, yeast and salt, then bake."
    with Scorer([metric], cache=False, device="cpu") as scorer:
        results = scorer.score(
            [
                {"id": "with", "prompt": "How do I bake bread?", "prediction": answer},
                {"id": "alone", "prediction": answer},
            ]
        )
    assert results["toxicity_unsafe"][0] != pytest.approx(results["toxicity_unsafe"][1], **TOLERANCE)


def test_an_unknown_guard_family_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown guard model family 'llama-guard-9'"):
        Toxicity(model="some/path", guard="llama-guard-9")


def test_sentence_evidence_scores_each_sentence_alone() -> None:
    metric = Toxicity(model="profanity-check")
    text = "Thank you for the help. You are a stupid idiot."
    with Scorer([metric], cache=False) as scorer:
        results = scorer.score(
            [{"id": "x", "prediction": text}, {"id": "y", "prediction": "Have a nice day."}]
        )
    two, one = results["toxicity_sentences"].to_list()
    assert [item["sentence"] for item in two] == ["Thank you for the help.", "You are a stupid idiot."]
    assert two[1]["score"] > 0.5 > two[0]["score"]
    alone = metric.score_batch([{"prediction": "You are a stupid idiot."}], scorer.runtime)["profanity"][0]
    assert two[1]["score"] == pytest.approx(alone, **float_tolerance("float64", style="approx"))
    assert one == [{"sentence": "Have a nice day.", "score": pytest.approx(results["toxicity_profanity"][1])}]
