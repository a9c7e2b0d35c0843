"""MiniCheck's chunked recipe (Tang, Laban & Durrett, EMNLP 2024): a claim is as supported as its best chunk.

The source is cut into chunks of whole sentences of about ``chunk_words`` words (fewer when a chunk
and the claim would not fit the model together), consecutive chunks sharing ``overlap`` sentences so
that a fact told across a chunk boundary is seen whole once. Every (chunk, claim) pair gets
P(supported); a claim takes its best chunk's, and keeps that chunk as evidence, by character offsets
into the source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from metrics.base import Scores
from metrics.sentences import premise_token_budget, sentence_spans, split_sentences, token_spans

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

ClaimUnit = Literal["sentences", "whole"]

DEFAULT_CHUNK_WORDS = 400  # MiniCheck's chunk size
DEFAULT_OVERLAP = 1  # sentences shared by consecutive chunks
DEFAULT_THRESHOLD = 0.5  # the verdict's cut when neither the caller nor the model's calibration gives one

Span = tuple[int, int]  # [start, end) character offsets into the source


def pack_windows(
    word_counts: Sequence[int], fits: Callable[[int, int], bool], *, chunk_words: int, overlap: int
) -> list[tuple[int, int]]:
    """Windows ``[first, stop)`` of consecutive units covering them all, in order.

    A window grows while it stays within ``chunk_words`` words and ``fits(first, stop)`` (a single
    unit always makes a window). The next window starts ``overlap`` units before the previous one
    ends, unless that would leave it nothing new to add.

    >>> pack_windows([3, 3, 3, 3], lambda first, stop: True, chunk_words=6, overlap=1)
    [(0, 2), (1, 3), (2, 4)]
    """

    def grow(first: int) -> int:
        stop, words = first + 1, word_counts[first]
        while stop < len(word_counts) and words + word_counts[stop] <= chunk_words and fits(first, stop + 1):
            words += word_counts[stop]
            stop += 1
        return stop

    windows: list[tuple[int, int]] = []
    first = 0
    while first < len(word_counts):
        stop = grow(first)
        if windows and stop <= windows[-1][1]:  # the shared units left no room for a new one
            first = windows[-1][1]
            stop = grow(first)
        windows.append((first, stop))
        first = max(stop - overlap, first + 1)
        if stop == len(word_counts):
            break
    return windows


def source_chunks(
    source: str, tokenizer: Any, token_budget: int, *, chunk_words: int, overlap: int, language: str
) -> list[Span]:
    """Chunks of whole sentences, as spans of ``source``, each within ``token_budget`` tokens.

    A sentence over the budget is cut into pieces that fit, which then count as sentences.
    """
    units = [
        piece
        for sentence in sentence_spans(source, language)
        for piece in token_spans(source, sentence, tokenizer, token_budget)
    ]

    def fits(first: int, stop: int) -> bool:
        # Counted on the chunk's own text: the whitespace between sentences may be tokens too.
        text = source[units[first][0] : units[stop - 1][1]]
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) <= token_budget

    word_counts = [len(source[start:end].split()) for start, end in units]
    windows = pack_windows(word_counts, fits, chunk_words=chunk_words, overlap=overlap)
    return [(units[first][0], units[stop - 1][1]) for first, stop in windows]


@dataclass(frozen=True)
class ClaimCheck:
    """One claim's verdict: P(supported) by its best chunk, the verdict, and that chunk's span."""

    claim: str
    probability: float
    supported: bool
    evidence: Span

    def detail(self, source: str) -> dict[str, Any]:
        start, end = self.evidence
        return {
            "claim": self.claim,
            "score": self.probability,
            "supported": self.supported,
            "evidence": source[start:end],
            "start": start,
            "end": end,
        }


def check_claims(
    claims: Sequence[str], chunks: Sequence[Span], support: Sequence[Sequence[float]], threshold: float
) -> list[ClaimCheck]:
    """Each claim's best chunk by ``support[chunk][claim]`` = P(supported), and the verdict at ``threshold``.

    >>> check_claims(["c"], [(0, 5), (6, 9)], [[0.2], [0.7]], threshold=0.5)
    [ClaimCheck(claim='c', probability=0.7, supported=True, evidence=(6, 9))]
    """
    checks = []
    for index, claim in enumerate(claims):
        best = max(range(len(chunks)), key=lambda chunk: support[chunk][index])
        probability = support[best][index]
        checks.append(ClaimCheck(claim, probability, probability >= threshold, chunks[best]))
    return checks


def record_scores(checks: Sequence[ClaimCheck]) -> tuple[float, float, float]:
    """``(mean, min, all_supported)`` over a record's claims; ``all_supported`` is 1.0 or 0.0."""
    probabilities = [check.probability for check in checks]
    all_supported = all(check.supported for check in checks)
    return sum(probabilities) / len(probabilities), min(probabilities), float(all_supported)


def minicheck_scores(
    records: Sequence[Mapping[str, Any]],
    rt: Runtime,
    *,
    model: str,
    claim_unit: ClaimUnit = "sentences",
    chunk_words: int = DEFAULT_CHUNK_WORDS,
    overlap: int = DEFAULT_OVERLAP,
    threshold: float | None = None,
    language: str = "en",
    label_map: Mapping[str, str] | None = None,
) -> Scores:
    """``mean``, ``min`` and ``all_supported`` per record, and its ``claims`` with their evidence.

    Every (chunk, claim) pair of the batch goes to ``rt.support`` in one call, each distinct pair once.
    ``threshold`` None: the model's calibrated threshold, else :data:`DEFAULT_THRESHOLD`.
    """
    tokenizer, max_length = rt.support_tokenizer(model)
    claims = [claims_of(record["prediction"], claim_unit, language) for record in records]
    chunks = [
        source_chunks(
            record["source"],
            tokenizer,
            premise_token_budget(tokenizer, max_length, record_claims),
            chunk_words=chunk_words,
            overlap=overlap,
            language=language,
        )
        for record, record_claims in zip(records, claims, strict=True)
    ]
    pairs = [
        (record["source"][start:end], claim)
        for record, record_chunks, record_claims in zip(records, chunks, claims, strict=True)
        for start, end in record_chunks
        for claim in record_claims
    ]
    unique = list(dict.fromkeys(pairs))
    support = dict(zip(unique, rt.support(model, unique, label_map=label_map).tolist(), strict=True))
    if threshold is None:
        calibration = rt.calibration(model)
        threshold = calibration.threshold if calibration is not None else DEFAULT_THRESHOLD
    scores: Scores = {"mean": [], "min": [], "all_supported": [], "claims": []}
    for record, record_chunks, record_claims in zip(records, chunks, claims, strict=True):
        source = record["source"]
        matrix = [
            [support[(source[start:end], claim)] for claim in record_claims] for start, end in record_chunks
        ]
        checks = check_claims(record_claims, record_chunks, matrix, threshold)
        mean, lowest, all_supported = record_scores(checks)
        scores["mean"].append(mean)
        scores["min"].append(lowest)
        scores["all_supported"].append(all_supported)
        scores["claims"].append([check.detail(source) for check in checks])
    return scores


def claims_of(prediction: str, claim_unit: ClaimUnit, language: str = "en") -> list[str]:
    """The prediction's sentences, or the whole prediction as one claim."""
    if claim_unit == "whole":
        return [prediction.strip()]
    return split_sentences(prediction, language)
