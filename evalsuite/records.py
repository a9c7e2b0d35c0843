"""Record schema, field mapping and streaming readers.

A record is a mapping with some of the canonical fields (``id``, ``prompt``, ``source``,
``prediction``, ``references``, ``samples``, ``sample_logprobs``: one log-probability per sample);
every other key is metadata and is kept as it is.
Inputs are read lazily, in chunks, so a file of any size is never held in memory::

    for chunk in iter_chunks("answers.jsonl", fields={"prediction": "output"}, chunk_size=500):
        for raw in chunk:
            record = validate_record(raw, required=("prediction", "references"))
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import itertools
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import polars as pl

from evalsuite.errors import ConfigError, InputError

CANONICAL_FIELDS = ("id", "prompt", "source", "prediction", "references", "samples", "sample_logprobs")
TEXT_FIELDS = ("prompt", "source", "prediction")
SUPPORTED_EXTENSIONS = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".parquet", ".csv")

# Fields whose value is a list; in CSV (and often Parquet written from CSV) a list arrives as JSON text.
_LIST_FIELDS = ("references", "samples", "sample_logprobs")

# pandas DataFrames and pyarrow Tables are accepted too (converted through polars), typed as Any
# so neither library has to be installed.
Source: TypeAlias = str | os.PathLike[str] | pl.DataFrame | pl.LazyFrame | Iterable[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record as read, before validation.

    ``index`` is the 0-based position over the whole input; ``location`` is what a person needs to
    find it: ``"answers.jsonl:12"`` (1-based line), ``"data.parquet:row 5"`` (1-based row) or
    ``"record 3"`` (0-based, for in-memory input). ``data`` is the record after field mapping, or
    ``None`` when it could not be parsed. ``error`` says why a record cannot be scored (unparseable,
    or a duplicate id); ``field`` names the field at fault, when one is.
    """

    index: int
    location: str
    data: dict[str, Any] | None
    error: str | None = None
    field: str | None = None


# --------------------------------------------------------------------------------------------
# Field mapping


def parse_field_mapping(items: Iterable[str]) -> dict[str, str]:
    """Parse CLI ``--field`` options into ``{canonical: source_column}``.

    >>> parse_field_mapping(["prediction=output", "references=gold"])
    {'prediction': 'output', 'references': 'gold'}
    """
    mapping: dict[str, str] = {}
    for item in items:
        canonical, sep, column = (part.strip() for part in item.partition("="))
        if not sep or not canonical or not column:
            raise ConfigError(f"--field expects CANONICAL=COLUMN (e.g. prediction=output), got {item!r}")
        if canonical not in CANONICAL_FIELDS:
            raise ConfigError(
                f"--field {item!r}: unknown field {canonical!r}; "
                f"expected one of {', '.join(CANONICAL_FIELDS)}"
            )
        if canonical in mapping and mapping[canonical] != column:
            raise ConfigError(f"--field {canonical} is mapped twice ({mapping[canonical]!r} and {column!r})")
        mapping[canonical] = column
    return mapping


def apply_field_mapping(data: Mapping[str, Any], fields: Mapping[str, str] | None) -> dict[str, Any]:
    """Rename source columns to canonical names; the source column is not kept under its old name.

    A mapped column wins over a key that already had the canonical name.

    >>> apply_field_mapping({"output": "Paris", "lang": "en"}, {"prediction": "output"})
    {'lang': 'en', 'prediction': 'Paris'}
    """
    if not fields:
        return dict(data)
    sources = set(fields.values())
    targets = {canonical for canonical, column in fields.items() if column in data}
    out = {k: v for k, v in data.items() if k not in sources and k not in targets}
    for canonical, column in fields.items():
        if column in data:
            out[canonical] = data[column]
    return out


def _decode_list_cells(data: dict[str, Any]) -> dict[str, Any]:
    """Decode ``'["a", "b"]'`` cells of list fields, as tabular files cannot hold lists natively."""
    for name in _LIST_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                decoded = json.loads(value)
            except ValueError:
                continue  # a reference may simply start with "[": keep the text
            # "[1, 2]" is more likely an answer than a list of references: only take lists of strings
            # (of numbers for log-probabilities).
            item_type = (int, float) if name == "sample_logprobs" else str
            if isinstance(decoded, list) and all(isinstance(item, item_type) for item in decoded):
                data[name] = decoded
    return data


# --------------------------------------------------------------------------------------------
# Readers


def _extension(path: Path) -> str | None:
    name = path.name.lower()
    # Longest first, so ".jsonl.gz" is not taken for ".gz".
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return None


def _checked_path(source: str | os.PathLike[str]) -> tuple[Path, str]:
    path = Path(source)
    ext = _extension(path)
    if ext is None:
        raise ConfigError(
            f"cannot read {os.fspath(source)!r}: unsupported file type; "
            f"expected one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise ConfigError(
            f"input file {os.fspath(source)!r} does not exist (supported: {', '.join(SUPPORTED_EXTENSIONS)})"
        )
    return path, ext


def _open_binary(path: Path, ext: str) -> gzip.GzipFile | io.BufferedReader:
    return gzip.open(path, "rb") if ext.endswith(".gz") else path.open("rb")


def _jsonl_lines(path: Path, ext: str, name: str) -> Iterator[tuple[int, bytes | None, str | None]]:
    """``(line number, line, None)`` for each non-blank line, then ``(n, None, why)`` if the file is cut.

    A compressed stream that breaks off (a truncated download) ends the file with one bad record
    after the lines read so far, so those are kept; a file that is not gzip at all is a file error.
    The one place that knows how a JSON lines file is laid out, shared by reading and counting.
    """
    line_number = 0
    with _open_binary(path, ext) as fh:
        try:
            for line_number, line in enumerate(fh, start=1):
                if line_number == 1 and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8) :]  # written by some Windows tools; not part of the data
                if line.strip():
                    yield line_number, line, None
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
            if line_number == 0:
                raise InputError(f"not a readable gzip file: {exc}", location=name) from exc
            yield (
                line_number + 1,
                None,
                f"the compressed file is cut or damaged here ({exc}); lines before it were read",
            )


def _iter_jsonl(
    path: Path, ext: str, name: str, fields: Mapping[str, str] | None, skip: int
) -> Iterator[RawRecord]:
    for index, (line_number, line, problem) in enumerate(_jsonl_lines(path, ext, name)):
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
        return RawRecord(index, location, None, f"not a JSON object (got {_json_type(value)})")
    return RawRecord(index, location, apply_field_mapping(value, fields))


def _json_type(value: Any) -> str:
    names = {
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _csv_rows(path: Path, name: str) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """``(first line, cells, None)`` for each non-empty row, header included; ``(line, None, why)`` for a
    malformed one.

    The reader is strict, so an unterminated quote is an error (reported on the line that opened it)
    instead of one cell that silently swallows the rest of the file. Shared by reading and counting.
    """
    # surrogateescape turns bad bytes into lone surrogates, so one bad row becomes one bad record
    # instead of an exception that ends the run.
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        previous_end = 0
        while True:
            start = previous_end + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                previous_end = reader.line_num
                if start > previous_end:  # nothing but the end of the file was left
                    return
                yield start, None, _csv_problem(exc, start, reader.line_num)
                continue
            previous_end = reader.line_num
            if row:
                yield start, row, None


def _csv_problem(error: csv.Error, start: int, end: int) -> str:
    if "unexpected end of data" in str(error):
        return (
            f"unterminated quoted field: the quote opened on line {start} is never closed, "
            f"so lines {start}-{end} (the rest of the file) cannot be read as records"
        )
    return f"malformed CSV row (lines {start}-{end}): {error}"


def _csv_table(path: Path, name: str) -> tuple[list[str], Iterator[tuple[int, list[str] | None, str | None]]]:
    """The header and the rows after it; a header that cannot be read is a file error."""
    rows = _csv_rows(path, name)
    first = next(rows, None)
    if first is None:
        return [], rows
    line_number, header, problem = first
    if header is None:
        raise InputError(f"cannot read the CSV header: {problem}", location=f"{name}:{line_number}")
    return header, rows


def _iter_csv(path: Path, name: str, fields: Mapping[str, str] | None, skip: int) -> Iterator[RawRecord]:
    header, rows = _csv_table(path, name)
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
    return RawRecord(index, location, _decode_list_cells(apply_field_mapping(data, fields)))


def _parquet_file(path: Path, name: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", location=name) from exc


def _iter_parquet(
    path: Path, name: str, fields: Mapping[str, str] | None, skip: int, chunk_size: int
) -> Iterator[RawRecord]:
    import pyarrow as pa

    with _parquet_file(path, name) as parquet:
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
                data = _decode_list_cells(apply_field_mapping(row, fields))
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
            yield RawRecord(index, f"record {index}", _decode_list_cells(apply_field_mapping(row, fields)))
            index += 1


def _iter_mappings(items: Iterable[Any], fields: Mapping[str, str] | None, skip: int) -> Iterator[RawRecord]:
    for index, item in enumerate(items):
        if index < skip:
            continue
        location = f"record {index}"
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
    source: Source, fields: Mapping[str, str] | None, skip: int, chunk_size: int
) -> Iterator[RawRecord]:
    if isinstance(source, str | os.PathLike):
        path, ext = _checked_path(source)
        name = os.fspath(source)
        if ext == ".parquet":
            return _iter_parquet(path, name, fields, skip, chunk_size)
        if ext == ".csv":
            return _iter_csv(path, name, fields, skip)
        return _iter_jsonl(path, ext, name, fields, skip)
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
    return _iter_mappings(source, fields, skip)


def _record_id(raw: RawRecord) -> str | None:
    """The id a record will get (its own, or its index), or ``None`` when validation will refuse it."""
    if raw.data is None:
        return None
    value = raw.data.get("id")
    if value is None:
        return str(raw.index)
    try:
        return str(_normalise("id", value, required=False))  # the very rule validate_record applies
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
    source: Source, *, fields: Mapping[str, str] | None = None, skip: int = 0, chunk_size: int = 1000
) -> Iterator[RawRecord]:
    """Stream ``source`` one :class:`RawRecord` at a time (see :func:`iter_chunks`)."""
    if skip < 0:
        raise ConfigError(f"skip must be >= 0, got {skip}")
    seen: dict[str, str] = {}
    if skip:
        # Resuming: the ids of the records passed over still count for duplicates after them.
        for _ in itertools.islice(_flag_duplicate_ids(_read(source, fields, 0, chunk_size), seen), skip):
            pass
    return _flag_duplicate_ids(_read(source, fields, skip, chunk_size), seen)


def iter_chunks(
    source: Source, *, fields: Mapping[str, str] | None = None, chunk_size: int = 1000, skip: int = 0
) -> Iterator[list[RawRecord]]:
    """Stream ``source`` in lists of ``chunk_size`` records (the last may be shorter).

    ``source`` is a path (``.jsonl``, ``.ndjson``, ``.jsonl.gz``, ``.parquet``, ``.csv``), a polars
    DataFrame or LazyFrame, a pandas DataFrame, a pyarrow Table or an iterable of mappings. ``skip``
    leading records are passed over without being yielded (resume); indices continue from ``skip``.
    Unparseable records, and records whose id an earlier record has, come back with ``error`` set
    rather than raising, so one bad line does not stop a run; a file that cannot be read at all
    raises :class:`InputError`.

    >>> [len(c) for c in iter_chunks([{"prediction": "a"}] * 5, chunk_size=2)]
    [2, 2, 1]
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    # Not a generator itself, so a missing file or a bad argument raises here, at the call.
    return _batched(iter_records(source, fields=fields, skip=skip, chunk_size=chunk_size), chunk_size)


def _batched(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    while chunk := list(itertools.islice(records, size)):
        yield chunk


def count_records(source: Source) -> int | None:
    """Count records cheaply, for a progress bar; ``None`` when the source has no known length.

    Counts what :func:`iter_records` yields, a record cut off by a damaged file included.
    """
    if isinstance(source, str | os.PathLike):
        path, ext = _checked_path(source)
        name = os.fspath(source)
        if ext == ".parquet":
            with _parquet_file(path, name) as parquet:
                return int(parquet.metadata.num_rows)
        if ext == ".csv":
            return sum(1 for _ in _csv_table(path, name)[1])
        return sum(1 for _ in _jsonl_lines(path, ext, name))
    frame = _as_polars(source)
    if isinstance(frame, pl.DataFrame):
        return frame.height
    if isinstance(source, Sized) and frame is None:
        return len(source)
    return None


# --------------------------------------------------------------------------------------------
# Validation


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _field_error(name, f"field '{name}' must be a string, got {type(value).__name__}")
    if not value:
        raise _field_error(name, f"field '{name}' is an empty string")
    if value.isspace():
        raise _field_error(name, f"field '{name}' is only whitespace")
    _check_unicode(name, value, f"field '{name}'")
    return value


def _check_unicode(name: str, text: str, what: str) -> None:
    """Refuse a lone surrogate (``"\\ud800"`` in JSON): it is not Unicode text and no file can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _field_error(
            name,
            f"{what} is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} "
            f"at character {exc.start + 1}",
        ) from None


def _check_metadata_unicode(name: str, value: Any) -> None:
    # Metadata is written out as it is, so it must be encodable too (keys of nested objects included).
    if isinstance(value, str):
        _check_unicode(name, value, f"field {name!a}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check_unicode(name, key, f"a key inside field {name!a}")
            _check_metadata_unicode(name, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_metadata_unicode(name, item)


def _check_string_list(name: str, value: list[Any], *, allow_empty: bool) -> list[str]:
    if not value and not allow_empty:
        raise _field_error(name, f"field '{name}' is an empty list")
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise _field_error(
                name, f"field '{name}' item {position} must be a string, got {type(item).__name__}"
            )
        if not item:
            raise _field_error(name, f"field '{name}' item {position} is an empty string")
        if item.isspace():
            raise _field_error(name, f"field '{name}' item {position} is only whitespace")
        _check_unicode(name, item, f"field '{name}' item {position}")
    return list(value)


def _check_logprobs(value: Any) -> list[float]:
    if not isinstance(value, list | tuple):
        raise _field_error(
            "sample_logprobs",
            f"field 'sample_logprobs' must be a list of numbers, got {type(value).__name__}",
        )
    for position, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise _field_error(
                "sample_logprobs",
                f"field 'sample_logprobs' item {position} must be a number, got {type(item).__name__}",
            )
        if not math.isfinite(item) or item > 0:
            raise _field_error(
                "sample_logprobs",
                f"field 'sample_logprobs' item {position} must be a finite log-probability (<= 0), got {item}",
            )
    return [float(item) for item in value]


def _field_error(name: str, message: str) -> InputError:
    # The location is filled in by validate_record, which knows it.
    return InputError(message, field=name)


def _normalise(name: str, value: Any, *, required: bool) -> Any:
    if name == "id":
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _field_error(name, f"field 'id' must be a string or an integer, got {type(value).__name__}")
        return _check_text(name, str(value))
    if name in TEXT_FIELDS:
        return _check_text(name, value)
    if name == "references":
        if isinstance(value, str):
            return [_check_text(name, value)]
        if isinstance(value, list | tuple):
            return _check_string_list(name, list(value), allow_empty=False)
        raise _field_error(
            name, f"field 'references' must be a string or a list of strings, got {type(value).__name__}"
        )
    if name == "sample_logprobs":
        return _check_logprobs(value)
    # samples: an empty list is harmless until a metric needs samples.
    if isinstance(value, list | tuple):
        return _check_string_list(name, list(value), allow_empty=not required)
    raise _field_error(name, f"field 'samples' must be a list of strings, got {type(value).__name__}")


def validate_record(raw: RawRecord, required: Iterable[str]) -> dict[str, Any]:
    """Check and normalise one record, or raise :class:`InputError` naming its location and field.

    Every canonical field present is checked, required or not; ``references`` becomes a list of
    strings, ``id`` a string (the record's index when absent). A canonical field set to null counts
    as absent. Metadata keys are returned unchanged.

    >>> validate_record(RawRecord(0, "record 0", {"prediction": "a", "references": "b"}), ["prediction"])
    {'id': '0', 'prediction': 'a', 'references': ['b']}
    """
    if raw.data is None or raw.error is not None:
        raise InputError(raw.error or "record could not be read", location=raw.location, field=raw.field)
    data = raw.data
    required = tuple(required)
    for name in required:
        if name == "id":
            continue  # always defaults to the index
        if name not in data:
            present = ", ".join(data) or "none"
            raise InputError(
                f"missing required field '{name}' "
                f"(fields present: {present}; map one with --field {name}=<name>)",
                location=raw.location,
                field=name,
            )
        if data[name] is None:
            raise InputError(f"field '{name}' is null", location=raw.location, field=name)
    record: dict[str, Any] = {"id": str(raw.index)}
    for key, value in data.items():
        try:
            if key not in CANONICAL_FIELDS:
                _check_unicode(key, key, f"field name {key!a}")
                _check_metadata_unicode(key, value)
                record[key] = value
            elif value is not None:
                record[key] = _normalise(key, value, required=key in required)
        except InputError as exc:
            raise InputError(exc.reason, location=raw.location, field=key) from None
    logprobs, samples = record.get("sample_logprobs"), record.get("samples")
    if logprobs is not None and len(logprobs) != len(samples or []):
        raise InputError(
            f"field 'sample_logprobs' has {len(logprobs)} values for {len(samples or [])} samples; "
            "give one log-probability per sample",
            location=raw.location,
            field="sample_logprobs",
        )
    return record


def error_entry(raw: RawRecord, error: InputError) -> dict[str, Any]:
    """The row written to the errors file for a record that failed validation."""
    return {
        "index": raw.index,
        "location": raw.location,
        "field": error.field,
        "reason": error.reason,
        "record": raw.data,
    }


# --------------------------------------------------------------------------------------------
# Hashing


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def content_key(record: Mapping[str, Any], fields: Sequence[str]) -> str:
    """Cache key of ``record`` for a metric that reads ``fields``: equal inputs give equal keys.

    >>> key = content_key({"prediction": "a", "lang": "en"}, ["prediction"])
    >>> key == content_key({"prediction": "a"}, ["prediction"])
    True
    """
    payload = {name: record.get(name) for name in sorted(set(fields))}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
