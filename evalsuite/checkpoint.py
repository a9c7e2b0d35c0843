"""Resumable chunked output: a killed run (even ``kill -9``) resumes with every record exactly once.

Chunk ``i`` of the input is written into ``<OUT>.partial/`` as ``part-{i:06d}.parquet`` and, when it had
bad records, ``errors-{i:06d}.jsonl``. Each file is written under a temporary name, fsynced and
renamed atomically; the errors file is renamed first, so the existence of ``part-i`` is the commit
point of chunk ``i``. :meth:`ChunkedWriter.finalize` joins the parts into ``OUT``; the staging
directory stays until :meth:`ChunkedWriter.close`, so a run killed before its manifest is written
finishes it when run again::

    with ChunkedWriter("run.parquet", fingerprint={"input": sha}, chunk_size=1000, inputs=[src]) as writer:
        chunks = iter_chunks(src, chunk_size=1000, skip=writer.records_done)
        for i, chunk in enumerate(chunks, start=writer.completed_chunks):
            writer.write_chunk(i, scored_rows(chunk), bad_rows(chunk))
        out_path, errors_path = writer.finalize()
        write_manifest(out_path, ...)
        writer.close()

The writer never deletes or replaces a file it did not create: an output, errors, staging or lock
path that is one of the run's ``inputs`` (by name, symlink or hard link) is refused, and an errors
file beside ``OUT`` is replaced only when a checkpoint or the manifest of an earlier run into
``OUT`` says it wrote it. A lock (``OUT.lock``) keeps a second run off the same output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import polars as pl
from polars.datatypes import DataTypeClass

from evalsuite.errors import ConfigError, ResumeError

try:  # POSIX only: elsewhere two runs into one output are not kept apart.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

OUTPUT_FORMATS = (".jsonl", ".parquet", ".csv")

_JOB_FILE = "job.json"
_JOB_FORMAT = 1
# Written into staging before the joined errors file is committed beside OUT: from then on that
# file is this job's own, and a resumed finalize may replace or delete it.
_OWNS_ERRORS_FILE = "owns-errors-file"
_PART = re.compile(r"part-(\d{6})\.parquet")
_ERRORS = re.compile(r"errors-(\d{6})\.jsonl")
_TMP_SUFFIX = ".tmp"
_DataType = pl.DataType | DataTypeClass  # polars gives either, e.g. pl.Int64 or pl.List(pl.Int64)
# Parquet key-value metadata of a part: the metadata columns written as JSON text in it.
_JSON_COLUMNS_KEY = "evalsuite:json_columns"


def _fsync_dir(path: Path) -> None:
    # A rename is only durable once its directory entry is flushed.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


def commit_file(tmp: Path, final: Path) -> None:
    """Make a fully written temp file durable, then atomically give it its final name."""
    _fsync_file(tmp)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _write_bytes_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    tmp.write_bytes(data)
    commit_file(tmp, path)


def json_line(row: Mapping[str, Any]) -> bytes:
    """One JSON line, readable text where it can be; a lone surrogate (not encodable) is escaped."""
    text = json.dumps(row, ensure_ascii=False, default=str)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(row, ensure_ascii=True, default=str) + "\n").encode("ascii")


def _same_file(path: Path, inputs: Iterable[Path]) -> Path | None:
    """The input that ``path`` is (the same name, a symlink to it or a hard link), if any."""
    try:
        stat = path.stat()
    except OSError:
        return None
    for source in inputs:
        try:
            other = source.stat()
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) == (other.st_dev, other.st_ino):
            return source
    return None


class OutputLock:
    """An exclusive lock on an output (``OUT.lock``), released when the process ends, even by ``kill -9``.

    The lock file holds who took it (pid, host, start time), so a second run can say which run
    holds the output.
    """

    def __init__(self, out: Path) -> None:
        self.path = out.with_name(out.name + ".lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            return
        while True:
            handle = self.path.open("a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise ResumeError(
                    f"another evalsuite run is writing {self.path.name[: -len('.lock')]} ({holder}); "
                    "wait for it to finish or stop it, or choose another output"
                ) from None
            # A run that just finished unlinks its lock file: if ours is no longer the file at this
            # path, a newcomer could lock the new one too, so start again.
            try:
                current = self.path.stat()
            except FileNotFoundError:
                handle.close()
                continue
            opened = os.fstat(handle.fileno())
            if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
                handle.close()
                continue
            break
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking, so nobody locks a file about to vanish
        self._handle.close()
        self._handle = None


class ChunkedWriter:
    """Write scored chunks to a staging directory and join them into one output file at the end.

    Re-opening the same output with the same ``fingerprint`` resumes after the last committed
    chunk: read the input with ``skip=writer.records_done`` and number chunks from
    ``writer.completed_chunks``. A different fingerprint raises :class:`ResumeError`. ``inputs`` are
    the files the run reads: none of the writer's paths may be one of them. ``manifest`` is the
    manifest file that will describe ``out``: an earlier one that lists the errors file beside
    ``out`` shows that an evalsuite run wrote it, so it may be replaced.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        fingerprint: Mapping[str, Any],
        chunk_size: int,
        overwrite: bool = False,
        inputs: Iterable[str | os.PathLike[str]] = (),
        manifest: str | os.PathLike[str] | None = None,
    ) -> None:
        self.out = Path(out)
        self.format = self.out.suffix.lower()
        if self.format not in OUTPUT_FORMATS:
            raise ConfigError(
                f"cannot write {os.fspath(out)!r}: unsupported output type; "
                f"expected one of {', '.join(OUTPUT_FORMATS)}"
            )
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.staging = self.out.with_name(self.out.name + ".partial")
        self.errors_path = self.out.with_suffix(".errors.jsonl")
        self.manifest = Path(manifest) if manifest is not None else None
        self._trash = self.out.with_name(self.out.name + ".partial.done")
        self._lock = OutputLock(self.out)
        # Round-trip through JSON so a stored and a fresh fingerprint compare equal (tuples → lists).
        self._job = json.loads(
            json.dumps({"format": _JOB_FORMAT, "chunk_size": chunk_size, "fingerprint": dict(fingerprint)})
        )
        self._finalized = False
        self.json_columns: list[str] = []  # metadata columns written as JSON text, known after finalize()

        self._refuse_inputs([Path(source) for source in inputs])
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._completed = self._open(overwrite)
        except BaseException:
            self._lock.release()
            raise

    def _refuse_inputs(self, inputs: list[Path]) -> None:
        paths = [self.out, self.errors_path, self.staging, self._trash, self._lock.path]
        if self.manifest is not None:
            paths.append(self.manifest)
        for path in paths:
            source = _same_file(path, inputs)
            if source is not None:
                raise ConfigError(
                    f"the output would overwrite the input: {path} is {source}"
                    + ("" if path == source else " (a link to it)")
                    + "; choose another --output"
                )

    # ----------------------------------------------------------------------------------------
    # Opening and resuming

    def _open(self, overwrite: bool) -> int:
        if self._trash.exists():
            # Left by a crash at the very end of close(): the job had finished and was recorded.
            self._remove_own_dir(self._trash)
        if self.errors_path.exists() and not self._owns_errors_file():
            raise ConfigError(
                f"{self.errors_path} exists, but no earlier run into {self.out.name} wrote it (no checkpoint "
                "or manifest lists it), so it is left alone; move it away or choose another --output"
            )
        if overwrite:
            self._remove_own_dir(self.staging)
            self.out.unlink(missing_ok=True)
            self.errors_path.unlink(missing_ok=True)  # an earlier run's: checked just above
        elif self.out.exists() and not self._is_job_dir(self.staging):
            raise ResumeError(f"{self.out} already exists; pass --overwrite to replace it")
        return self._open_staging()

    def _is_job_dir(self, path: Path) -> bool:
        return path.is_dir() and (path / _JOB_FILE).is_file()

    def _remove_own_dir(self, path: Path) -> None:
        """Delete a staging directory, but only one this writer's format made (never a user's folder)."""
        if not path.exists():
            return
        leftovers = (
            [child for child in path.iterdir() if not child.name.endswith(_TMP_SUFFIX)]
            if path.is_dir()
            else [path]
        )
        if not self._is_job_dir(path) and leftovers:
            raise ConfigError(
                f"{path} exists and is not an evalsuite checkpoint; move it away or choose another --output"
            )
        shutil.rmtree(path)

    def _owns_errors_file(self) -> bool:
        if (self.staging / _OWNS_ERRORS_FILE).is_file():
            return True
        if self.manifest is None or not self.manifest.is_file():
            return False
        try:
            earlier = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(earlier, dict):
            return False
        if "errors_file" in earlier:
            listed = earlier["errors_file"]
            return listed is not None and Path(listed).name == self.errors_path.name
        # Manifests before errors_file was recorded: the run into this output wrote it.
        return isinstance(earlier.get("output"), str) and Path(earlier["output"]).name == self.out.name

    def _open_staging(self) -> int:
        job_file = self.staging / _JOB_FILE
        if self._is_job_dir(self.staging):
            stored = json.loads(job_file.read_text(encoding="utf-8"))
            if stored != self._job:
                raise ResumeError(
                    f"{self.staging} holds a partial output of a different job "
                    f"(differs in: {', '.join(_differences(stored, self._job))}); "
                    f"pass --overwrite to start over"
                )
            return self._recover()
        # No job file: the previous run died before writing anything worth keeping.
        self._remove_own_dir(self.staging)
        self.staging.mkdir(parents=True)
        _write_bytes_atomically(job_file, json.dumps(self._job, indent=2, sort_keys=True).encode("utf-8"))
        return 0

    def _recover(self) -> int:
        """Count the committed chunks and delete what a crash left of later ones."""
        parts = {int(m.group(1)) for p in self.staging.iterdir() if (m := _PART.fullmatch(p.name))}
        completed = 0
        while completed in parts:
            completed += 1
        for path in self.staging.iterdir():
            part, errors = _PART.fullmatch(path.name), _ERRORS.fullmatch(path.name)
            stale = (
                path.name.endswith(_TMP_SUFFIX)
                or (part is not None and int(part.group(1)) >= completed)
                or (errors is not None and int(errors.group(1)) >= completed)
            )
            if stale:
                path.unlink()
        return completed

    @property
    def completed_chunks(self) -> int:
        """Number of leading chunks already committed; the next chunk to write has this index."""
        return self._completed

    @property
    def records_done(self) -> int:
        """Input records covered by the committed chunks: the ``skip`` to resume reading with."""
        return self._completed * self.chunk_size

    # ----------------------------------------------------------------------------------------
    # Writing

    def write_chunk(
        self,
        chunk_index: int,
        table: pl.DataFrame,
        errors: Sequence[Mapping[str, Any]],
        *,
        json_columns: Collection[str] = (),
    ) -> None:
        """Commit chunk ``chunk_index``: its scored rows and the rows of its bad records.

        ``json_columns`` are the columns of ``table`` that hold JSON text because their values had
        no one type (see :func:`table_from_rows`).
        """
        if self._finalized:
            raise RuntimeError("write_chunk() after finalize()")
        if chunk_index != self._completed:
            # Chunks are committed in order, so "the first missing part" is always the resume point.
            raise ValueError(f"expected chunk {self._completed}, got chunk {chunk_index}")
        if errors:
            lines = b"".join(json_line(row) for row in errors)
            _write_bytes_atomically(self.staging / f"errors-{chunk_index:06d}.jsonl", lines)
        part = self.staging / f"part-{chunk_index:06d}.parquet"
        tmp = part.with_name(part.name + _TMP_SUFFIX)
        table.write_parquet(tmp, metadata={_JSON_COLUMNS_KEY: json.dumps(sorted(json_columns))})
        commit_file(tmp, part)
        self._completed += 1

    def finalize(self) -> tuple[Path, Path | None]:
        """Join the committed chunks into ``OUT`` (and ``<stem>.errors.jsonl``).

        Returns ``(out_path, errors_path)``; ``errors_path`` is ``None`` when no record was bad. The
        checkpoint stays until :meth:`close`, so a crash before then is finished by a re-run.
        """
        if self._finalized:
            raise RuntimeError("finalize() called twice")
        parts = [self.staging / f"part-{i:06d}.parquet" for i in range(self._completed)]
        errors = [self.staging / f"errors-{i:06d}.jsonl" for i in range(self._completed)]
        errors_path = self._join_errors([p for p in errors if p.is_file()])
        tmp = self.staging / ("output" + _TMP_SUFFIX)
        self.json_columns = self._join_parts(parts, tmp)
        commit_file(tmp, self.out)
        self._finalized = True
        return self.out, errors_path

    def close(self) -> None:
        """Unlock the output; after :meth:`finalize`, remove the checkpoint first (call it once the
        manifest is written). The checkpoint of an unfinished job stays, for a later run to resume."""
        if self._finalized and self.staging.exists():
            # Rename before deleting: a crash mid-delete must not leave a staging dir without its job
            # file, which a re-run would take for a fresh start of a job that has in fact finished.
            os.replace(self.staging, self._trash)
            _fsync_dir(self.out.parent)
            shutil.rmtree(self._trash)
        self._lock.release()

    def __enter__(self) -> ChunkedWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._lock.release()  # the checkpoint stays for the re-run to resume

    def _join_errors(self, files: list[Path]) -> Path | None:
        if not any(path.stat().st_size for path in files):
            if self.errors_path.exists() and self._owns_errors_file():
                self.errors_path.unlink()  # stale from an earlier run into this output
            return None
        _write_bytes_atomically(self.staging / _OWNS_ERRORS_FILE, b"")
        tmp = self.staging / ("errors" + _TMP_SUFFIX)
        with tmp.open("wb") as sink:
            for path in files:
                with path.open("rb") as source:
                    shutil.copyfileobj(source, sink)
        commit_file(tmp, self.errors_path)
        return self.errors_path

    def _join_parts(self, parts: list[Path], tmp: Path) -> list[str]:
        """Write the parts as one file; returns the columns written as JSON text."""
        if not parts:
            if self.format == ".parquet":
                pl.DataFrame().write_parquet(tmp)
            else:
                tmp.write_bytes(b"")
            return []
        frames, json_columns = _unify_parts(parts)
        # diagonal_relaxed: chunks may lack a column or have it all-null (dtype Null) where others do not.
        frame = pl.concat(frames, how="diagonal_relaxed")
        if self.format == ".parquet":
            frame.sink_parquet(tmp)
        elif self.format == ".jsonl":
            frame.sink_ndjson(tmp)
        else:
            frame.with_columns(json_encode_nested(frame.collect_schema())).sink_csv(tmp)
        return json_columns


# --------------------------------------------------------------------------------------------
# Tables whose columns have no one type


def table_from_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[pl.DataFrame, list[str]]:
    """A table of ``rows``; a column whose values have no one type is written as JSON text.

    Returns the table and those columns. Parquet (and so every chunk) needs one type per column:
    polars would otherwise turn ``{"a": 1}`` beside ``[1]`` into a struct, or ``1`` beside ``"a"``
    into text, without a word. Whole numbers beside fractions are one type (numbers, as JSON says).
    """
    if not rows:
        return pl.DataFrame(), []
    names = list(dict.fromkeys(name for row in rows for name in row))
    mixed = [name for name in names if not _has_one_type(row.get(name) for row in rows)]
    if mixed:
        rows = [{**row, **{name: _json_text(row.get(name)) for name in mixed}} for row in rows]
    table = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    return table.select(names), mixed


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


class _NoOneTypeError(Exception):
    pass


def _has_one_type(values: Iterable[Any]) -> bool:
    shape: Any = None
    try:
        for value in values:
            shape = _merge(shape, _shape(value))
    except _NoOneTypeError:
        return False
    return True


def _shape(value: Any) -> Any:
    """The type of a JSON-like value as polars would store it: ``None`` (unknown), a name, or a
    ``("list", item)`` / ``("struct", {key: shape})`` pair."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise _NoOneTypeError  # beyond 64 bits: only text holds it
        return "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Mapping):
        if not value:
            raise _NoOneTypeError  # Parquet cannot store a struct without fields
        return ("struct", {str(key): _shape(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        item_shape: Any = None
        for item in value:
            item_shape = _merge(item_shape, _shape(item))
        return ("list", item_shape)
    return type(value).__name__  # dates, bytes... as polars reads them from Parquet


def _merge(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0]:
        if a[0] == "list":
            return ("list", _merge(a[1], b[1]))
        fields = dict(a[1])
        for key, shape in b[1].items():
            fields[key] = _merge(fields.get(key), shape)
        return ("struct", fields)
    raise _NoOneTypeError


def _unify_parts(parts: list[Path]) -> tuple[list[pl.LazyFrame], list[str]]:
    """The parts as frames that concatenate, and the columns that had to become JSON text.

    A column is JSON text in every part when one part wrote it so, or when two parts hold it as
    types that do not widen into one (only null, whole numbers into floats, and structs into a
    struct with the fields of both do).
    """
    schemas = [pl.read_parquet_schema(part) for part in parts]
    encoded = [set(json.loads(pl.read_parquet_metadata(part).get(_JSON_COLUMNS_KEY, "[]"))) for part in parts]
    as_json: set[str] = set().union(*encoded)
    dtypes: dict[str, _DataType] = {}
    for schema in schemas:
        for name, dtype in schema.items():
            if name in as_json:
                continue
            if name not in dtypes:
                dtypes[name] = dtype
                continue
            widened = _widen(dtypes[name], dtype)
            if widened is None:
                as_json.add(name)
            else:
                dtypes[name] = widened
    frames = []
    for part, schema, done in zip(parts, schemas, encoded, strict=True):
        frame = pl.scan_parquet(part)
        todo = [name for name in schema if name in as_json and name not in done]
        if todo:
            frame = frame.with_columns(
                pl.col(name).map_batches(_to_json_strings, return_dtype=pl.String, is_elementwise=True)
                for name in todo
            )
        frames.append(frame)
    columns = sorted(as_json)
    warn_json_text(columns)
    return frames, columns


def warn_json_text(columns: Sequence[str]) -> None:
    """Say which columns were stored as JSON text because their values had no one type."""
    if columns:
        warnings.warn(
            f"column(s) {', '.join(map(repr, columns))} hold values of more than one type (e.g. an object "
            "in one record, a list in another): they are written as JSON text",
            UserWarning,
            stacklevel=3,
        )


def _widen(a: _DataType, b: _DataType) -> _DataType | None:
    """The type both ``a`` and ``b`` fit without loss, or ``None``."""
    if a == b:
        return a
    if a == pl.Null:
        return b
    if b == pl.Null:
        return a
    numbers = (pl.Int64, pl.Float64)
    if a in numbers and b in numbers:
        return pl.Float64()
    if isinstance(a, pl.List) and isinstance(b, pl.List):
        inner = _widen(a.inner, b.inner)
        return None if inner is None else pl.List(inner)
    if isinstance(a, pl.Struct) and isinstance(b, pl.Struct):
        fields: dict[str, _DataType] = {field.name: field.dtype for field in a.fields}
        for field in b.fields:
            if field.name in fields:
                widened = _widen(fields[field.name], field.dtype)
                if widened is None:
                    return None
                fields[field.name] = widened
            else:
                fields[field.name] = field.dtype
        return pl.Struct(fields)
    return None


def json_encode_nested(schema: pl.Schema) -> list[pl.Expr]:
    """CSV cannot hold lists or structs: write them as JSON text (which the readers decode back)."""
    return [
        pl.col(name).map_batches(_to_json_strings, return_dtype=pl.String, is_elementwise=True)
        for name, dtype in schema.items()
        if dtype.is_nested()
    ]


def _to_json_strings(series: pl.Series) -> pl.Series:
    values = [_json_text(value) for value in series.to_list()]
    return pl.Series(series.name, values, dtype=pl.String)


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    stored_fp, current_fp = stored.get("fingerprint", {}), current.get("fingerprint", {})
    keys = [k for k in ("format", "chunk_size") if stored.get(k) != current.get(k)]
    keys += sorted(k for k in stored_fp.keys() | current_fp.keys() if stored_fp.get(k) != current_fp.get(k))
    return keys or ["job file"]
