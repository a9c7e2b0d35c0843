"""Sentence segmentation and token-bounded text chunks, shared by every sentence-level metric.

Segmentation is pysbd's rule-based splitter (no model, no download); chunking keeps every chunk
within a token budget so that no text is ever truncated behind the caller's back.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from evalsuite.errors import ConfigError, MissingDependencyError


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
