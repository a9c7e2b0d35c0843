"""File runs: one pass that hashes, counts and validates the input, then resumable chunked scoring.

The input is read twice at most: the survey (hash and count, and in fail mode or for corpus metrics
also validation and corpus statistics) and the scoring pass of the engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from evalsuite.manifest import RunManifest
from evalsuite.records import count_records, iter_chunks
from evalsuite.results import Results
from evalsuite.run.work import Hooks, OnError, Row, Work


@dataclass(frozen=True)
class InputFacts:
    """The input of a file run: its path, SHA-256 and number of records (bad ones included)."""

    path: str
    sha256: str
    records: int


def survey_input(
    work: Work,
    source: str | Path,
    *,
    fields: Mapping[str, str] | None,
    on_error: OnError,
    chunk_size: int,
    hooks: Hooks,
) -> InputFacts:
    """Hash and count ``source`` in one pass; validate it too in fail mode (a bad record stops the run
    before any scoring) and feed corpus metrics their statistics when some need them."""
    digest = hashlib.sha256()
    if on_error == "fail" or work.needs_corpus:
        seen = 0

        def valid_records() -> Iterator[Row]:
            nonlocal seen
            for chunk in iter_chunks(source, fields=fields, chunk_size=chunk_size, digest=digest):
                seen += len(chunk)
                yield from work.validate(chunk, on_error).records

        work.fit_corpus(valid_records(), hooks)
        records = seen
    else:
        records = count_records(source, digest=digest) or 0
    return InputFacts(str(source), digest.hexdigest(), records)


def read_scores(path: Path, columns: list[str]) -> pl.DataFrame:
    """Only ids and score columns of a finished output, so large texts stay on disk."""
    suffix = path.suffix
    if suffix == ".parquet":
        frame = pl.scan_parquet(path)
    elif suffix == ".csv":
        frame = pl.scan_csv(path, infer_schema_length=None)
    else:
        if path.stat().st_size == 0:
            return pl.DataFrame(schema={"id": pl.String, **dict.fromkeys(columns, pl.Float64)})
        frame = pl.scan_ndjson(path, infer_schema_length=None)
    present = frame.collect_schema().names()
    return frame.select(
        *[pl.col(column) for column in ["id"] if column in present],
        *[
            pl.col(column).cast(pl.Float64)
            if column in present
            else pl.lit(None, dtype=pl.Float64).alias(column)
            for column in columns
        ],
    ).collect()


@dataclass
class FileRun:
    """What a streamed file run produced (the table itself stays on disk)."""

    output: Path
    errors_file: Path | None
    manifest_file: Path
    records: int
    errors: int
    summary: pl.DataFrame
    results: Results  # ids and score columns only, for threshold checks

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as written (JSON); :attr:`run_manifest` is the typed view."""
        return self.results.manifest

    @property
    def run_manifest(self) -> RunManifest:
        return self.results.run_manifest
