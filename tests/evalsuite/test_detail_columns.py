"""Evidence columns (lists, structs) travel with the scores: every output format, and the cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from evalsuite.api import Scorer

RECORDS: list[dict[str, Any]] = [
    {
        "id": "a",
        "source": "The plant opened in 1998. It employs 300 people.",
        "prediction": "The plant opened in 1998. It has 300 staff.",
        "samples": ["It opened in 1998.", "It opened in 1999.", "It opened in 1998."],
        "sample_logprobs": [-0.5, -1.5, -0.7],
    },
    {
        "id": "b",
        "source": "Spiders have eight legs.",
        "prediction": "Spiders have six legs.",
        "samples": ["Eight.", "Six."],
    },
]
METRICS = ("semantic_entropy", "selfcheck_nli", "factuality")
DETAILS = ["semantic_entropy_cluster_ids", "selfcheck_nli_sentences", "factuality_claims"]


def scorer_for(model: str, cache: Path | bool = False) -> Scorer:
    return Scorer({name: {"model": model} for name in METRICS}, device="cpu", cache=cache)


def decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_details_are_written_in_every_format(
    tmp_path: Path, tiny_cross_encoder: Callable[..., Path], suffix: str
) -> None:
    model = str(tiny_cross_encoder())
    with scorer_for(model) as scorer:
        in_memory = scorer.score(RECORDS).table
        run = scorer.score_file(_write(tmp_path, RECORDS), tmp_path / f"out{suffix}")
    assert scorer.detail_columns == DETAILS
    assert set(DETAILS) <= set(in_memory.columns)
    written = {".jsonl": pl.read_ndjson, ".csv": pl.read_csv, ".parquet": pl.read_parquet}[suffix](run.output)
    for column in DETAILS:
        got = [decoded(value) for value in written[column].to_list()]
        assert got == in_memory[column].to_list()
    assert in_memory["semantic_entropy_cluster_ids"].to_list()[1] in ([0, 1], [0, 0])
    claims = in_memory["factuality_claims"].to_list()[0]
    assert [claim["claim"] for claim in claims] == ["The plant opened in 1998.", "It has 300 staff."]
    assert set(claims[0]) == {"claim", "score", "support", "entailment", "contradicting", "contradiction"}
    # Details are evidence, not scores: they are not summarised.
    assert not set(DETAILS) & set(run.summary["score"].to_list())


def test_details_come_back_from_the_cache(tmp_path: Path, tiny_cross_encoder: Callable[..., Path]) -> None:
    model = str(tiny_cross_encoder())
    with scorer_for(model, cache=tmp_path / "cache.sqlite") as first:
        fresh = first.score(RECORDS).table
    with scorer_for(model, cache=tmp_path / "cache.sqlite") as second:
        cached = second.score(RECORDS).table
        assert second.runtime.stats.nli_pairs_requested == 0
        assert second.cache_misses == 0
    assert cached.equals(fresh)


def test_optional_fields_are_part_of_the_cache_key(
    tmp_path: Path, tiny_cross_encoder: Callable[..., Path]
) -> None:
    model = str(tiny_cross_encoder())
    record = dict(RECORDS[0])
    other = {**record, "sample_logprobs": [-3.0, -0.1, -3.0]}
    with Scorer({"semantic_entropy": {"model": model}}, device="cpu", cache=tmp_path / "c.sqlite") as scorer:
        scorer.score([record])
        scorer.score([other])  # same samples, other log-probabilities: not served from the cache
        assert (scorer.cache_hits, scorer.cache_misses) == (0, 2)
        scorer.score([other])
        assert (scorer.cache_hits, scorer.cache_misses) == (1, 2)


def _write(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path
