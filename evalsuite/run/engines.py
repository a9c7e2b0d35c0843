"""Engines: where a file run's chunks are scored. The local one is here; Ray's is in
:mod:`evalsuite.distributed` and implements the same protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evalsuite.checkpoint import ChunkedWriter
from evalsuite.records import iter_chunks
from evalsuite.run.work import NO_HOOKS, ChunkResult, Hooks, OnError, RunStats, Work

Progress = Callable[[int], None]


@dataclass(frozen=True)
class FileJob:
    """What an engine scores: ``records`` records of ``source``, read with ``fields``."""

    source: Path
    records: int
    fields: Mapping[str, str] | None = None
    on_error: OnError = "fail"
    progress: Progress | None = None
    hooks: Hooks = NO_HOOKS


@dataclass
class EngineReport:
    """What an engine ran (its manifest ``engine`` entry), where the scores were computed when that
    is not this process's runtime, and the stats its chunks returned."""

    engine: dict[str, Any]
    stats: RunStats = field(default_factory=RunStats)
    runtime: dict[str, Any] | None = None


class Engine(Protocol):
    """Where :meth:`evalsuite.Scorer.score_file` scores its chunks; :class:`LocalEngine` is the default."""

    def write_chunks(self, work: Work, job: FileJob, writer: ChunkedWriter) -> EngineReport:
        """Score the records of ``job.source`` that ``writer`` has not committed, committing chunk by chunk.

        Chunk ``i`` holds input records ``[i * chunk_size, (i + 1) * chunk_size)``, scored by
        :meth:`Work.run` and committed with :func:`commit_chunk`.
        """
        ...


def commit_chunk(work: Work, writer: ChunkedWriter, chunk_index: int, result: ChunkResult) -> None:
    """Commit one chunk's scored rows and error rows with ``writer``."""
    table, json_columns = work.table(result.rows)
    writer.write_chunk(chunk_index, table, result.errors, json_columns=json_columns)


class LocalEngine:
    """Scores the chunks one after another in this process."""

    def write_chunks(self, work: Work, job: FileJob, writer: ChunkedWriter) -> EngineReport:
        report = EngineReport({"name": "local"})
        chunks = iter_chunks(
            job.source, fields=job.fields, chunk_size=writer.chunk_size, skip=writer.records_done
        )
        for chunk_index, chunk in enumerate(chunks, start=writer.completed_chunks):
            result = work.run(chunk, job.on_error, job.hooks)
            commit_chunk(work, writer, chunk_index, result)
            report.stats.add(result.stats)
            if job.progress:
                job.progress(len(chunk))
        return report
