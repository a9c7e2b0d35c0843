"""Sentence segmentation and token-bounded text chunks, shared by every sentence-level metric.

Segmentation is pysbd's rule-based splitter (no model, no download); chunking keeps every chunk
within a token budget so that no text is ever truncated behind the caller's back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from evalsuite.errors import ConfigError, MissingDependencyError

MIN_CHUNK_TOKENS = 16  # below this a chunk carries too little context to judge anything


@lru_cache(maxsize=8)
def _segmenter(language: str) -> Any:
    try:
        import pysbd
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise MissingDependencyError("sentence segmentation needs pysbd: pip install pysbd") from error
    try:
        return pysbd.Segmenter(language=language, clean=False)
    except ValueError as error:
        raise ConfigError(f"pysbd has no sentence rules for language {language!r}: {error}") from None


def split_sentences(text: str, language: str = "en") -> list[str]:
    """The sentences of ``text``, stripped; a text with no sentence boundary is one sentence.

    >>> split_sentences("Dr. Smith arrived at 3 p.m. on Jan. 5. It rained.")
    ['Dr. Smith arrived at 3 p.m. on Jan. 5.', 'It rained.']
    """
    sentences = [sentence.strip() for sentence in _segmenter(language).segment(text)]
    sentences = [sentence for sentence in sentences if sentence]
    if not sentences and text.strip():
        return [text.strip()]
    return sentences


def token_chunks(sentences: Sequence[str], tokenizer: Any, budget: int, *, pack: bool = False) -> list[str]:
    """Chunks of at most ``budget`` tokens covering every sentence, in order.

    Each sentence is a chunk (``pack=False``), or consecutive sentences are packed into windows as
    long as the budget allows (``pack=True``). A sentence longer than the budget is cut into
    consecutive spans of ``budget`` tokens, at token boundaries of the original text.
    """
    if budget < 1:
        raise ConfigError(f"the token budget of a chunk must be positive, got {budget}")
    if not sentences:
        return []
    encoded = tokenizer(list(sentences), add_special_tokens=False, verbose=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    pieces: list[tuple[str, int]] = []
    for sentence, length in zip(sentences, lengths, strict=True):
        if length <= budget:
            pieces.append((sentence, length))
        else:
            pieces.extend((span, budget) for span in _split_by_tokens(sentence, tokenizer, budget))
    if not pack:
        return [text for text, _ in pieces]
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for text, length in pieces:
        # Joining with a space can merge into one token less, never more: the sum is an upper bound.
        if current and used + length > budget:
            chunks.append(" ".join(current))
            current, used = [], 0
        current.append(text)
        used += length
    if current:
        chunks.append(" ".join(current))
    return chunks


def _split_by_tokens(text: str, tokenizer: Any, budget: int) -> list[str]:
    """Consecutive spans of at most ``budget`` tokens, cut between words where the budget allows."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("cutting an over-long sentence needs a fast tokenizer (with character offsets)")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
        "offset_mapping"
    ]
    spans = []
    start = 0
    while start < len(offsets):
        end = min(start + budget, len(offsets))
        cut = end
        # A token that starts where the previous one ends continues the same word: back off to a gap.
        while start + 1 < cut < len(offsets) and offsets[cut][0] == offsets[cut - 1][1]:
            cut -= 1
        if cut > start + 1 or end == len(offsets):
            end = cut
        spans.append(text[offsets[start][0] : offsets[end - 1][1]].strip())
        start = end
    return [span for span in spans if span]


def sentence_spans(text: str, language: str = "en") -> list[tuple[int, int]]:
    """Where :func:`split_sentences`' sentences lie in ``text``: ``text[start:end]`` is each one exactly.

    Sentences are found in order, each after the previous one, so a repeated sentence gets its own
    place; should the splitter ever alter a sentence's spacing, it is matched across whitespace.

    >>> text = "It rained.  It rained.\\n\\nIt stopped."
    >>> [text[start:end] for start, end in sentence_spans(text)]
    ['It rained.', 'It rained.', 'It stopped.']
    """
    spans = []
    cursor = 0
    for sentence in split_sentences(text, language):
        span = _locate(text, sentence, cursor)
        if span is None:  # never seen: keep the rest covered as one span rather than lose it
            rest = text[cursor:]
            if rest.strip():
                spans.append((cursor + len(rest) - len(rest.lstrip()), cursor + len(rest.rstrip())))
            break
        spans.append(span)
        cursor = span[1]
    return spans


def _locate(text: str, piece: str, cursor: int) -> tuple[int, int] | None:
    """The first place of ``piece`` in ``text`` at or after ``cursor``, exactly or up to whitespace."""
    start = text.find(piece, cursor)
    if start >= 0:
        return start, start + len(piece)
    pattern = r"\s+".join(re.escape(word) for word in piece.split())
    found = re.compile(pattern).search(text, cursor)
    return found.span() if found else None


def token_spans(text: str, span: tuple[int, int], tokenizer: Any, budget: int) -> list[tuple[int, int]]:
    """``text[start:end]`` as consecutive spans of at most ``budget`` tokens, in character offsets.

    A span within the budget is kept whole; a longer one is cut as :func:`token_chunks` cuts an
    over-long sentence (between words where the budget allows).
    """
    start, end = span
    piece = text[start:end]
    if len(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"]) <= budget:
        return [span]
    spans = []
    cursor = 0
    for part in _split_by_tokens(piece, tokenizer, budget):
        offset = piece.find(part, cursor)  # the parts are stripped slices of the piece, in order
        spans.append((start + offset, start + offset + len(part)))
        cursor = offset + len(part)
    return spans


def premise_token_budget(
    tokenizer: Any, max_length: int, hypotheses: Sequence[str], *, minimum: int = MIN_CHUNK_TOKENS
) -> int:
    """Tokens left for a premise beside the longest of ``hypotheses`` in a pair of ``max_length``
    tokens (special tokens included), and never fewer than ``minimum``."""
    encoded = tokenizer(list(hypotheses), add_special_tokens=False, verbose=False)
    longest = max(len(ids) for ids in encoded["input_ids"])
    return max(max_length - tokenizer.num_special_tokens_to_add(pair=True) - longest, minimum)
