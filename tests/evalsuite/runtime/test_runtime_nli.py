"""Runtime.nli and label_columns: columns follow the model's label names, checked on tiny models.

The reference is the model's own ``logits.softmax(-1)``, one unpadded pair at a time, re-ordered
by hand from ``id2label``; no evalsuite code takes part in computing it.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification

from evalsuite.errors import ConfigError
from evalsuite.runtime import Runtime, TruncationWarning
from evalsuite.runtime.nli import NLI_LABELS, label_columns
from evalsuite.testing import float_tolerance

# Batched against unbatched, or against an independent computation: equal up to float32 rounding.
FLOAT32 = float_tolerance("float32")

TinyFactory = Callable[..., Path]

PERMUTATIONS = list(itertools.permutations(NLI_LABELS))
PAIRS = [
    ("A man is playing a guitar on stage.", "A person is making music."),
    ("A man is playing a guitar on stage.", "Nobody is playing an instrument."),
    ("The café in Zürich opens daily, Sundays included.", "It is open on Sunday."),
    ("Revenue grew 12% in 2023 while costs stayed flat, so margins improved.", "Margins fell."),
    ("Paris", "Paris is the capital of France and its largest city by population."),
    ("東京は日本の首都です。", "Tokyo is a city."),
    ("Why? Because... well, #reasons & <tags>.", "There are reasons."),
]


def model_probabilities(model_dir: Path, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
    """The model's softmax over its own outputs (model order), one pair at a time, no padding."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        rows = [
            model(**tokenizer(premise, hypothesis, return_tensors="pt")).logits.softmax(-1)[0]
            for premise, hypothesis in pairs
        ]
    return torch.stack(rows)


def in_nli_order(probabilities: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
    """Columns re-ordered to (entailment, neutral, contradiction) from the names of the outputs."""
    ordered = torch.zeros((probabilities.shape[0], len(NLI_LABELS)))
    for output, name in enumerate(labels):
        ordered[:, NLI_LABELS.index(name)] = probabilities[:, output]
    return ordered


# -- label_columns --------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", PERMUTATIONS, ids="-".join)
def test_label_columns_follow_names_in_any_order(labels: tuple[str, ...]) -> None:
    assert label_columns(dict(enumerate(labels))) == [NLI_LABELS.index(name) for name in labels]


@pytest.mark.parametrize(
    ("id2label", "expected"),
    [
        ({0: "ENTAILMENT", 1: "Neutral", 2: "Contradiction"}, [0, 1, 2]),
        ({0: "contradicts", 1: "entails", 2: " neutral "}, [2, 0, 1]),
        ({0: "Contradictory", 1: "Neutral", 2: "Entailed"}, [2, 1, 0]),
        ({"0": "neutral", "1": "contradiction", "2": "entailment"}, [1, 2, 0]),  # JSON keys are strings
    ],
)
def test_label_columns_accept_synonyms_and_any_case(id2label: dict[int, str], expected: list[int]) -> None:
    assert label_columns(id2label) == expected


@pytest.mark.parametrize(
    ("id2label", "expected"),
    [
        ({0: "entailment", 1: "not_entailment"}, [0, 1]),
        ({0: "not_entailment", 1: "entailment"}, [1, 0]),
        ({0: "entailment", 1: "non-entailment"}, [0, 1]),
        ({0: "Not Entailment", 1: "Entailment"}, [1, 0]),
    ],
)
def test_two_class_heads_map_not_entailment_to_neutral(id2label: dict[int, str], expected: list[int]) -> None:
    assert label_columns(id2label) == expected


@pytest.mark.parametrize(
    "id2label",
    [
        {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"},
        {0: "LABEL_0", 1: "LABEL_1"},
        {0: "entailment", 1: "neutral", 2: "maybe"},
    ],
)
def test_unnamed_labels_need_a_label_map(id2label: dict[int, str]) -> None:
    with pytest.raises(ConfigError, match="label_map") as error:
        label_columns(id2label)
    assert repr(id2label[len(id2label) - 1]) in str(error.value)


def test_label_map_overrides_the_model_names() -> None:
    unnamed = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    label_map = {"LABEL_0": "contradiction", "LABEL_1": "entailment", "LABEL_2": "neutral"}
    assert label_columns(unnamed, label_map) == [2, 0, 1]
    any_spelling = {"label_0": "neutral", "label-1": "contradiction", "Label_2": "entailment"}
    assert label_columns(unnamed, any_spelling) == [1, 2, 0]
    # A map wins over names the model does carry.
    named = dict(enumerate(NLI_LABELS))
    swapped = {"entailment": "contradiction", "neutral": "neutral", "contradiction": "entailment"}
    assert label_columns(named, swapped) == [2, 1, 0]


@pytest.mark.parametrize(
    ("id2label", "label_map"),
    [
        ({0: "entailment", 1: "entails", 2: "neutral"}, None),
        ({0: "contradiction", 1: "contradicts", 2: "contradictory"}, None),
        (
            {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"},
            {"LABEL_0": "entailment", "LABEL_1": "entailment", "LABEL_2": "neutral"},
        ),
    ],
)
def test_duplicate_classes_are_refused(id2label: dict[int, str], label_map: dict[str, str] | None) -> None:
    with pytest.raises(ConfigError, match="name the same NLI class twice"):
        label_columns(id2label, label_map)


@pytest.mark.parametrize(
    "id2label",
    [{0: "entailment", 1: "entails"}, {0: "entailment", 1: "neutral", 2: "contradiction", 3: "entails"}],
)
def test_duplicate_classes_are_refused_for_any_number_of_outputs(id2label: dict[int, str]) -> None:
    with pytest.raises(ConfigError):
        label_columns(id2label)


def test_label_map_keys_spelled_as_the_model_labels_match() -> None:
    id2label = {0: "not entailment", 1: "entailment"}
    assert label_columns(id2label, {"not entailment": "neutral", "entailment": "entailment"}) == [1, 0]


# -- Runtime.nli against the model's own outputs --------------------------------------------------
@pytest.mark.parametrize("labels", PERMUTATIONS, ids="-".join)
def test_columns_are_the_models_softmax_reordered_by_label_name(
    labels: tuple[str, ...], tiny_cross_encoder: TinyFactory
) -> None:
    model_dir = tiny_cross_encoder(labels)
    expected = in_nli_order(model_probabilities(model_dir, PAIRS), labels)
    got = Runtime(device="cpu").nli(str(model_dir), PAIRS)
    assert got.dtype == torch.float32
    assert got.device.type == "cpu"
    assert got.shape == (len(PAIRS), 3)
    torch.testing.assert_close(got, expected, **FLOAT32)


@pytest.mark.parametrize("labels", PERMUTATIONS, ids="-".join)
def test_columns_follow_labels_not_positions(
    labels: tuple[str, ...], tiny_cross_encoder: TinyFactory
) -> None:
    """Same weights, head rows and names permuted together: the same model, so the same output."""
    reference = Runtime(device="cpu").nli(str(tiny_cross_encoder(NLI_LABELS)), PAIRS)
    permuted_dir = tiny_cross_encoder(labels, classifier_rows=[NLI_LABELS.index(name) for name in labels])
    got = Runtime(device="cpu").nli(str(permuted_dir), PAIRS)
    torch.testing.assert_close(got, reference, **FLOAT32)
    if labels != NLI_LABELS:  # and the test can tell: names alone permuted give other columns
        names_only = Runtime(device="cpu").nli(str(tiny_cross_encoder(labels)), PAIRS)
        assert not torch.allclose(names_only, reference, atol=1e-5, rtol=0)


def test_two_class_head_fills_entailment_and_neutral_only(tiny_cross_encoder: TinyFactory) -> None:
    labels = ("not_entailment", "entailment")
    model_dir = tiny_cross_encoder(labels)
    probabilities = model_probabilities(model_dir, PAIRS)
    got = Runtime(device="cpu").nli(str(model_dir), PAIRS)
    torch.testing.assert_close(got[:, 0], probabilities[:, 1], **FLOAT32)
    torch.testing.assert_close(got[:, 1], probabilities[:, 0], **FLOAT32)
    assert torch.equal(got[:, 2], torch.zeros(len(PAIRS)))


def test_unnamed_model_needs_label_map_and_then_matches_named(tiny_cross_encoder: TinyFactory) -> None:
    unnamed_dir = tiny_cross_encoder(("LABEL_0", "LABEL_1", "LABEL_2"))
    runtime = Runtime(device="cpu")
    with pytest.raises(ConfigError, match="label_map"):
        runtime.nli(str(unnamed_dir), PAIRS)
    label_map = {"LABEL_0": "contradiction", "LABEL_1": "entailment", "LABEL_2": "neutral"}
    named = runtime.nli(str(tiny_cross_encoder(("contradiction", "entailment", "neutral"))), PAIRS)
    torch.testing.assert_close(runtime.nli(str(unnamed_dir), PAIRS, label_map=label_map), named, **FLOAT32)


def test_batch_size_does_not_change_probabilities_and_order_is_kept(tiny_cross_encoder: TinyFactory) -> None:
    model_dir = tiny_cross_encoder(("neutral", "contradiction", "entailment"))
    pairs = [PAIRS[3], PAIRS[0], PAIRS[4], PAIRS[0], PAIRS[6], PAIRS[1], PAIRS[3], PAIRS[5], PAIRS[2]]
    one_by_one = Runtime(device="cpu", batch_size=1).nli(str(model_dir), pairs)
    batched = Runtime(device="cpu", batch_size=64).nli(str(model_dir), pairs)
    torch.testing.assert_close(batched, one_by_one, **FLOAT32)
    # Caller order: each row is its own pair's reference; duplicates get identical rows.
    expected = in_nli_order(model_probabilities(model_dir, pairs), ("neutral", "contradiction", "entailment"))
    torch.testing.assert_close(batched, expected, **FLOAT32)
    torch.testing.assert_close(batched[1], batched[3], atol=1e-6, rtol=0)
    torch.testing.assert_close(batched[0], batched[6], atol=1e-6, rtol=0)
    torch.testing.assert_close(batched.sum(dim=1), torch.ones(len(pairs)), **FLOAT32)
    assert ((batched >= 0) & (batched <= 1)).all()


def test_each_distinct_pair_reaches_the_model_once_per_runtime(tiny_cross_encoder: TinyFactory) -> None:
    model = str(tiny_cross_encoder())
    runtime = Runtime(device="cpu")
    first = runtime.nli(model, [PAIRS[0], PAIRS[1], PAIRS[0]])
    assert (runtime.stats.nli_pairs_requested, runtime.stats.nli_pairs_scored) == (3, 2)
    assert runtime.stats.texts_encoded == 2
    again = runtime.nli(model, [PAIRS[1], PAIRS[2], PAIRS[0]])
    assert (runtime.stats.nli_pairs_requested, runtime.stats.nli_pairs_scored) == (6, 3)
    # Served from the memo: the very numbers computed before.
    torch.testing.assert_close(again[0], first[1], atol=0, rtol=0)
    torch.testing.assert_close(again[2], first[0], atol=0, rtol=0)
    expected = in_nli_order(model_probabilities(Path(model), [PAIRS[2]]), NLI_LABELS)
    torch.testing.assert_close(again[1:2], expected, **FLOAT32)


def test_the_pair_memo_is_bounded_and_keyed_by_label_map(tiny_cross_encoder: TinyFactory) -> None:
    model = str(tiny_cross_encoder(("LABEL_0", "LABEL_1", "LABEL_2")))
    runtime = Runtime(device="cpu", nli_memo_size=2)
    straight = {"LABEL_0": "entailment", "LABEL_1": "neutral", "LABEL_2": "contradiction"}
    swapped = {"LABEL_0": "contradiction", "LABEL_1": "neutral", "LABEL_2": "entailment"}
    a = runtime.nli(model, PAIRS[:3], label_map=straight)
    assert runtime.stats.nli_pairs_scored == 3
    b = runtime.nli(model, PAIRS[:1], label_map=swapped)  # another label map is another answer
    # b was scored in a batch of 1, a in a batch of 3: equal up to float32 rounding.
    torch.testing.assert_close(b[0], a[0].flip(0), **float_tolerance(torch.float32))
    runtime.nli(model, PAIRS[:1], label_map=straight)  # evicted by the bound of 2: scored again
    assert runtime.stats.nli_pairs_scored == 5


def test_no_pairs_give_an_empty_three_column_tensor(tiny_cross_encoder: TinyFactory) -> None:
    got = Runtime(device="cpu").nli(str(tiny_cross_encoder()), [])
    assert got.shape == (0, 3)
    assert got.dtype == torch.float32


# -- truncation -----------------------------------------------------------------------------------
LIMIT = 64  # the tiny model's max_position_embeddings; below the tokenizer's 512
LONG_PREMISE = " ".join(f"word{i % 10} is here" for i in range(40))  # ~160 tokens
HYPOTHESIS = "The cat sat on the mat."


def probabilities_of(model_dir: Path, input_ids: list[int], token_type_ids: list[int]) -> torch.Tensor:
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        logits = model(
            input_ids=torch.tensor([input_ids]), token_type_ids=torch.tensor([token_type_ids])
        ).logits
    return logits.softmax(-1)[0]


def test_only_the_premise_is_truncated_counted_and_warned_once(tiny_cross_encoder: TinyFactory) -> None:
    model_dir = tiny_cross_encoder(NLI_LABELS, max_position_embeddings=LIMIT)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    premise_ids = tokenizer(LONG_PREMISE, add_special_tokens=False)["input_ids"]
    hypothesis_ids = tokenizer(HYPOTHESIS, add_special_tokens=False)["input_ids"]
    assert len(premise_ids) + len(hypothesis_ids) + 3 > LIMIT
    # Built by hand: [CLS] premise cut to fit [SEP] the whole hypothesis [SEP].
    kept = LIMIT - len(hypothesis_ids) - 3
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    input_ids = [cls, *premise_ids[:kept], sep, *hypothesis_ids, sep]
    token_type_ids = [0] * (kept + 2) + [1] * (len(hypothesis_ids) + 1)
    expected = probabilities_of(model_dir, input_ids, token_type_ids)
    # Cutting the end of the pair instead (losing the hypothesis) would give something else.
    naive = probabilities_of(model_dir, [cls, *premise_ids[: LIMIT - 2], sep], [0] * LIMIT)
    assert not torch.allclose(naive, expected, atol=1e-5, rtol=0)

    runtime = Runtime(device="cpu")
    pairs = [(LONG_PREMISE, HYPOTHESIS), PAIRS[0], (LONG_PREMISE + " more", HYPOTHESIS)]
    with pytest.warns(TruncationWarning) as caught:
        got = runtime.nli(str(model_dir), pairs)
    assert len(caught) == 1  # two long pairs, one warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already warned for this model: counted, not warned again
        again = runtime.nli(
            str(model_dir), [(LONG_PREMISE, HYPOTHESIS), (LONG_PREMISE + " again", HYPOTHESIS)]
        )
    # The repeated pair comes from the runtime's memo: only the new one is truncated (and counted).
    assert runtime.stats.truncated_texts == {str(model_dir): 3}
    torch.testing.assert_close(got[0], expected, **FLOAT32)
    torch.testing.assert_close(again[0], expected, **FLOAT32)
    short = in_nli_order(model_probabilities(model_dir, [PAIRS[0]]), NLI_LABELS)[0]
    torch.testing.assert_close(got[1], short, **FLOAT32)


def test_a_hypothesis_over_the_limit_is_cut_too_rather_than_failing(tiny_cross_encoder: TinyFactory) -> None:
    model_dir = tiny_cross_encoder(NLI_LABELS, max_position_embeddings=LIMIT)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pair = ("A short premise.", LONG_PREMISE)
    encoded = tokenizer(*pair, truncation="longest_first", max_length=LIMIT)
    expected = probabilities_of(model_dir, encoded["input_ids"], encoded["token_type_ids"])
    runtime = Runtime(device="cpu")
    with pytest.warns(TruncationWarning):
        got = runtime.nli(str(model_dir), [pair])
    assert runtime.stats.truncated_texts == {str(model_dir): 1}
    torch.testing.assert_close(got[0], expected, **FLOAT32)
