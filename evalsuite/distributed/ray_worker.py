"""What the Ray engine runs on the cluster: the record reader and the scoring actor.

This module imports Ray; :mod:`evalsuite.distributed.ray_engine` imports it only once Ray is known
to be installed.

Records and rows travel as pickles (Ray pickles what it ships anyway), so a value keeps its Python
type whatever the mix across records: an Arrow column per field would need one type per block, and
``references`` is a string in one record and a list in the next.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from evalsuite.errors import EvalsuiteError
from evalsuite.records import RawRecord, iter_chunks
from evalsuite.registry import Metric
from evalsuite.run import ChunkResult, OnError, Work, WorkSettings

RECORDS_SCHEMA = pa.schema([("index", pa.int64()), ("record", pa.binary())])
# Per input record: its scored row or its error row. On a batch's first row only: "stats", and
# "failure", an evalsuite error the worker hit (a model missing on its node), for the driver to raise:
# raised here, it would reach the driver as Ray's text, without its type.
SCORED_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("row", pa.binary()),
        ("error", pa.binary()),
        ("stats", pa.binary()),
        ("failure", pa.binary()),
    ]
)


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class RecordsDatasource(Datasource):
    """The raw records of one input file, read by evalsuite's own readers (so ids, line numbers and
    bad records are the local engine's), from record ``skip`` on, in blocks of ``block_size``."""

    def __init__(
        self,
        source: Path,
        *,
        fields: Mapping[str, str] | None,
        skip: int,
        block_size: int,
        records: int | None,
    ) -> None:
        super().__init__()
        self._source = source
        self._fields = dict(fields or {})
        self._skip = skip
        self._block_size = block_size
        self._records = records

    def get_name(self) -> str:
        return "ReadRecords"

    @property
    def supports_distributed_reads(self) -> bool:
        return False  # the input is on the driver's machine, not necessarily on the workers'

    def estimate_inmemory_data_size(self) -> int | None:
        return self._source.stat().st_size

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        # One sequential reader: a line file cannot be split without a pass over it, and reading
        # is never the bottleneck next to the models.
        metadata = BlockMetadata(
            num_rows=self._records,
            size_bytes=self.estimate_inmemory_data_size(),
            exec_stats=None,
            input_files=(str(self._source),),
        )
        return [ReadTask(self._read, metadata, schema=RECORDS_SCHEMA, per_task_row_limit=per_task_row_limit)]

    def _read(self) -> Iterator[pa.Table]:
        chunks = iter_chunks(self._source, fields=self._fields, chunk_size=self._block_size, skip=self._skip)
        for chunk in chunks:
            yield pa.table(
                {"index": [raw.index for raw in chunk], "record": [_dumps(raw) for raw in chunk]},
                schema=RECORDS_SCHEMA,
            )


class ScoringActor:
    """One :class:`Work` per Ray actor: its models load once and serve every batch it is given."""

    def __init__(self, metrics: Sequence[Metric], settings: WorkSettings, on_error: OnError) -> None:
        self._work: Work | None = None
        self._failure: EvalsuiteError | None = None
        try:
            # The driver's metric objects, with any corpus statistics they were fitted with.
            self._work = Work.build(list(metrics), settings)
        except EvalsuiteError as error:
            self._failure = error  # reported with the first batch: Ray would retry a failed __init__
        self._on_error = on_error
        context = ray.get_runtime_context()
        self._where = {"actor": context.get_actor_id(), "node": context.get_node_id()}

    def __call__(self, batch: pa.Table) -> pa.Table:
        chunk: list[RawRecord] = [pickle.loads(value) for value in batch.column("record").to_pylist()]
        indices = [raw.index for raw in chunk]
        failure = self._failure
        if failure is None and self._work is not None:
            try:
                result = self._work.run(chunk, self._on_error)
                rows, errors = _per_record(chunk, result)
                report = {**self._where, "runtime": self._work.runtime.describe(), "stats": result.stats}
                return _scored_table(indices, rows, errors, stats=report)
            except EvalsuiteError as error:
                failure = error
        nothing: list[bytes | None] = [None] * len(chunk)
        return _scored_table(indices, nothing, nothing, failure=failure)


def _per_record(chunk: list[RawRecord], result: ChunkResult) -> tuple[list[bytes | None], list[bytes | None]]:
    """Per record, in input order: its pickled scored row, or its pickled error row."""
    bad = {entry["index"]: entry for entry in result.errors}
    scored = iter(result.rows)  # the rows of the valid records, in input order
    row_column: list[bytes | None] = []
    error_column: list[bytes | None] = []
    for raw in chunk:
        failed = bad.get(raw.index)
        row_column.append(_dumps(next(scored)) if failed is None else None)
        error_column.append(None if failed is None else _dumps(failed))
    return row_column, error_column


def _scored_table(
    indices: list[int],
    rows: list[bytes | None],
    errors: list[bytes | None],
    *,
    stats: dict[str, Any] | None = None,
    failure: EvalsuiteError | None = None,
) -> pa.Table:
    first_only: list[bytes | None] = [None] * len(indices)  # batch-level values ride on the first row
    stats_column, failure_column = list(first_only), list(first_only)
    if indices:
        stats_column[0] = None if stats is None else _dumps(stats)
        failure_column[0] = None if failure is None else _dumps(failure)
    return pa.table(
        {"index": indices, "row": rows, "error": errors, "stats": stats_column, "failure": failure_column},
        schema=SCORED_SCHEMA,
    )
