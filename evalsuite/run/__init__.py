"""The one unit of work (a chunk of records → rows, errors, stats), resumable file runs and engines.

:class:`Work` validates and scores chunks; :func:`survey_input` reads a file once for its hash, count
and (in fail mode) validation; engines (:class:`LocalEngine`, ``evalsuite.distributed.RayEngine``)
score a file's chunks into a :class:`~evalsuite.checkpoint.ChunkedWriter`.
"""

from evalsuite.run.engines import Engine, EngineReport, FileJob, LocalEngine, Progress, commit_chunk
from evalsuite.run.files import FileRun, InputFacts, read_scores, survey_input
from evalsuite.run.provenance import package_version, run_manifest
from evalsuite.run.work import (
    NO_HOOKS,
    ChunkResult,
    Hooks,
    OnError,
    Row,
    RunStats,
    Scored,
    Validated,
    Work,
    WorkSettings,
    check_on_error,
)

__all__ = [
    "NO_HOOKS",
    "ChunkResult",
    "Engine",
    "EngineReport",
    "FileJob",
    "FileRun",
    "Hooks",
    "InputFacts",
    "LocalEngine",
    "OnError",
    "Progress",
    "Row",
    "RunStats",
    "Scored",
    "Validated",
    "Work",
    "WorkSettings",
    "check_on_error",
    "commit_chunk",
    "package_version",
    "read_scores",
    "run_manifest",
    "survey_input",
]
