"""Streaming readers: any source (file, DataFrame, iterable) as raw records, lazily, in chunks.

for chunk in iter_chunks("answers.jsonl", fields={"prediction": "output"}, chunk_size=500):
    for raw in chunk:
        record = validate_record(raw, required=("prediction", "references"))
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sized
from pathlib import Path
from typing import Any

import polars as pl

from evalsuite._validation import check_positive_int, invalid
from evalsuite.errors import ConfigError, InputError
from evalsuite.records.formats import (
    Digest,
    checked_path,
    csv_table,
    hash_file_into,
    json_type,
    jsonl_lines,
    parquet_file,
)
from evalsuite.records.schema import RawRecord, Source, apply_field_mapping, decode_list_cells
from evalsuite.records.validation import normalise_field


def _iter_jsonl(
    path: Path, ext: str, name: str, fields: Mapping[str, str] | None, skip: int, digest: Digest | None
) -> Iterator[RawRecord]:
    for index, (line_number, line, problem) in enumerate(jsonl_lines(path, ext, name, digest)):
        if index < skip:
            continue  # resuming: skip without the cost of decoding
        location = f"{name}:{line_number}"
        if line is None:
            yield RawRecord(index, location, None, problem)
        else:
            yield _parse_json_line(line, index, location, fields)


def _parse_json_line(line: bytes, index: int, location: str, fields: Mapping[str, str] | None) -> RawRecord:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRecord(index, location, None, f"invalid UTF-8 at byte {exc.start + 1}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawRecord(index, location, None, f"malformed JSON: {exc.msg} (col {exc.colno})")
    except RecursionError:
        return RawRecord(index, location, None, "malformed JSON: nested too deeply")
    if not isinstance(value, dict):
        return RawRecord(index, location, None, f"not a JSON object (got {json_type(value)})")
    return RawRecord(index, location, apply_field_mapping(value, fields))


def _iter_csv(
    path: Path, name: str, fields: Mapping[str, str] | None, skip: int, digest: Digest | None
) -> Iterator[RawRecord]:
    header, rows = csv_table(path, name, digest)
    for index, (line_number, row, problem) in enumerate(rows):
        if index < skip:
            continue
        location = f"{name}:{line_number}"
        if row is None:
            yield RawRecord(index, location, None, problem)
        else:
            yield _parse_csv_row(row, header, index, location, fields)


def _parse_csv_row(
    row: list[str], header: list[str], index: int, location: str, fields: Mapping[str, str] | None
) -> RawRecord:
    if len(row) > len(header):
        return RawRecord(
            index, location, None, f"row has {len(row)} cells but the header has {len(header)} columns"
        )
    for column, cell in zip(header, row, strict=False):
        if any("\udc80" <= char <= "\udcff" for char in cell):
            return RawRecord(index, location, None, f"invalid UTF-8 in column {column!r}")
    # An empty cell is how CSV says "no value": treat the field as absent.
    data = {column: cell for column, cell in zip(header, row, strict=False) if cell != ""}
    return RawRecord(index, location, decode_list_cells(apply_field_mapping(data, fields)))


def _iter_parquet(
    path: Path, name: str, fields: Mapping[str, str] | None, skip: int, chunk_size: int
) -> Iterator[RawRecord]:
    import pyarrow as pa

    with parquet_file(path, name) as parquet:
        # Skip whole row groups without decoding them, then the remainder of the first one kept.
        first_group, row_offset = 0, 0
        metadata = parquet.metadata
        while first_group < metadata.num_row_groups:
            group_rows = metadata.row_group(first_group).num_rows
            if row_offset + group_rows > skip:
                break
            row_offset += group_rows
            first_group += 1
        index = row_offset
        groups = list(range(first_group, metadata.num_row_groups))
        if not groups:
            return
        batches = parquet.iter_batches(batch_size=chunk_size, row_groups=groups)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as exc:
                # A damaged page: the rows before it are kept, the rest of the file cannot be read.
                yield RawRecord(
                    index, f"{name}:row {index + 1}", None, f"the Parquet file is damaged here: {exc}"
                )
                return
            for row in batch.to_pylist():
                index += 1
                if index <= skip:
                    continue
                data = decode_list_cells(apply_field_mapping(row, fields))
                yield RawRecord(index - 1, f"{name}:row {index}", data)


def _iter_frame(
    frame: pl.DataFrame | pl.LazyFrame, fields: Mapping[str, str] | None, skip: int, chunk_size: int
) -> Iterator[RawRecord]:
    # A LazyFrame is collected one slice at a time, so a large scan never sits in memory whole.
    index = skip
    while True:
        piece = frame.slice(index, chunk_size)
        if isinstance(piece, pl.LazyFrame):
            piece = piece.collect()
        if piece.height == 0:
            return
        for row in piece.iter_rows(named=True):
            yield RawRecord(index, f"record {index}", decode_list_cells(apply_field_mapping(row, fields)))
            index += 1


def _iter_mappings(
    items: Iterable[Any], fields: Mapping[str, str] | None, skip: int, label: str | None
) -> Iterator[RawRecord]:
    for index, item in enumerate(items):
        if index < skip:
            continue
        location = f"record {index}" if label is None else f"{label}[{index}]"
        if isinstance(item, Mapping):
            yield RawRecord(index, location, apply_field_mapping(item, fields))
        else:
            yield RawRecord(index, location, None, f"not a mapping (got {type(item).__name__})")


def _as_polars(source: Any) -> pl.DataFrame | pl.LazyFrame | None:
    """A pandas DataFrame or a pyarrow Table as a polars DataFrame (polars' own frames as they are).

    Iterating a pandas DataFrame yields its column names, so without this it would read as records
    that are strings. Detected by module, so neither library is imported unless it is in use.
    """
    if isinstance(source, pl.DataFrame | pl.LazyFrame):
        return source
    module = type(source).__module__.split(".")[0]
    if module == "pandas" and hasattr(source, "columns"):
        return pl.from_pandas(source)
    if module == "pyarrow" and hasattr(source, "schema"):
        frame = pl.from_arrow(source)
        return frame if isinstance(frame, pl.DataFrame) else frame.to_frame()
    return None


def _read(
    source: Source,
    fields: Mapping[str, str] | None,
    skip: int,
    chunk_size: int,
    digest: Digest | None = None,
    label: str | None = None,
) -> Iterator[RawRecord]:
    if isinstance(source, str | os.PathLike):
        path, ext = checked_path(source)
        name = os.fspath(source)
        if ext == ".parquet":
            if digest is not None:
                hash_file_into(digest, path)  # read at random by pyarrow: hashed in a pass of its own
            return _iter_parquet(path, name, fields, skip, chunk_size)
        if ext == ".csv":
            return _iter_csv(path, name, fields, skip, digest)
        return _iter_jsonl(path, ext, name, fields, skip, digest)
    frame = _as_polars(source)
    if frame is not None:
        return _iter_frame(frame, fields, skip, chunk_size)
    if isinstance(source, Mapping):
        raise ConfigError("expected a file path, a DataFrame or a sequence of records, got a single mapping")
    if isinstance(source, str | bytes) or not isinstance(source, Iterable):
        raise ConfigError(
            "expected a file path, a polars or pandas DataFrame, a polars LazyFrame, a pyarrow Table "
            f"or an iterable of records (mappings), got {type(source).__name__}"
        )
    return _iter_mappings(source, fields, skip, label)


def _record_id(raw: RawRecord) -> str | None:
    """The id a record will get (its own, or its index), or ``None`` when validation will refuse it."""
    if raw.data is None:
        return None
    value = raw.data.get("id")
    if value is None:
        return str(raw.index)
    try:
        return str(normalise_field("id", value, required=False))  # the very rule validate_record applies
    except InputError:
        return None


def _flag_duplicate_ids(records: Iterator[RawRecord], seen: dict[str, str]) -> Iterator[RawRecord]:
    """Mark a record whose id an earlier record has (``seen``: id → location) as bad, naming both.

    Results are paired on id (resume, compare, the dashboard, proxies), so two records with one id
    would be silently confused. ``1`` and ``"1"`` are the same id; a record without an id takes its
    position, which may collide with an explicit id.
    """
    for raw in records:
        record_id = _record_id(raw)
        if record_id is None or raw.error is not None:
            yield raw
            continue
        first = seen.setdefault(record_id, raw.location)
        if first == raw.location:
            yield raw
            continue
        own = (
            ""
            if raw.data and raw.data.get("id") is not None
            else " (this record has no id: it takes its position)"
        )
        yield RawRecord(
            raw.index,
            raw.location,
            raw.data,
            f"duplicate id {record_id!r}{own}: {first} has it too; ids pair records in results, resume and "
            "comparisons, so each record needs its own (drop the id field to number records by position)",
            field="id",
        )


def iter_records(
    source: Source,
    *,
    fields: Mapping[str, str] | None = None,
    skip: int = 0,
    chunk_size: int = 1000,
    digest: Digest | None = None,
    label: str | None = None,
) -> Iterator[RawRecord]:
    """Stream ``source`` one :class:`RawRecord` at a time (see :func:`iter_chunks`)."""
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise invalid("skip", "an integer >= 0", skip)
    if skip and digest is not None:
        raise ConfigError("digest hashes a whole file: it cannot be combined with skip")
    seen: dict[str, str] = {}
    if skip:
        # Resuming: the ids of the records passed over still count for duplicates after them.
        for _ in itertools.islice(_flag_duplicate_ids(_read(source, fields, 0, chunk_size), seen), skip):
            pass
    return _flag_duplicate_ids(_read(source, fields, skip, chunk_size, digest, label), seen)


def iter_chunks(
    source: Source,
    *,
    fields: Mapping[str, str] | None = None,
    chunk_size: int = 1000,
    skip: int = 0,
    digest: Digest | None = None,
    label: str | None = None,
) -> Iterator[list[RawRecord]]:
    """Stream ``source`` in lists of ``chunk_size`` records (the last may be shorter).

    ``source`` is a path (``.jsonl``, ``.ndjson``, ``.jsonl.gz``, ``.parquet``, ``.csv``), a polars
    DataFrame or LazyFrame, a pandas DataFrame, a pyarrow Table or an iterable of mappings. ``skip``
    leading records are passed over without being yielded (resume); indices continue from ``skip``.
    Unparseable records, and records whose id an earlier record has, come back with ``error`` set
    rather than raising, so one bad line does not stop a run; a file that cannot be read at all
    raises :class:`InputError`. ``digest`` (a hashlib object) is fed the file's bytes as they are
    read, so one pass both reads and hashes the input. ``label`` names in-memory records in errors
    (``label="records"``: ``records[3]``; default ``record 3``).

    >>> [len(c) for c in iter_chunks([{"prediction": "a"}] * 5, chunk_size=2)]
    [2, 2, 1]
    """
    check_positive_int("chunk_size", chunk_size)
    # Not a generator itself, so a missing file or a bad argument raises here, at the call.
    records = iter_records(
        source, fields=fields, skip=skip, chunk_size=chunk_size, digest=digest, label=label
    )
    return _batched(records, chunk_size)


def _batched(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    while chunk := list(itertools.islice(records, size)):
        yield chunk


def count_records(source: Source, *, digest: Digest | None = None) -> int | None:
    """Count records cheaply, for a progress bar; ``None`` when the source has no known length.

    Counts what :func:`iter_records` yields, a record cut off by a damaged file included.
    ``digest`` (a hashlib object) is fed a file's bytes in the same pass.
    """
    if isinstance(source, str | os.PathLike):
        path, ext = checked_path(source)
        name = os.fspath(source)
        if ext == ".parquet":
            if digest is not None:
                hash_file_into(digest, path)
            with parquet_file(path, name) as parquet:
                return int(parquet.metadata.num_rows)
        if ext == ".csv":
            return sum(1 for _ in csv_table(path, name, digest)[1])
        return sum(1 for _ in jsonl_lines(path, ext, name, digest))
    frame = _as_polars(source)
    if isinstance(frame, pl.DataFrame):
        return frame.height
    if isinstance(source, Sized) and frame is None:
        return len(source)
    return None
