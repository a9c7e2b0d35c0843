"""Resumable chunked output: a killed run (even ``kill -9``) resumes with every record exactly once.

Chunk ``i`` of the input is written into ``<OUT>.partial/`` as ``part-{i:06d}.parquet`` and, when it had
bad records, ``errors-{i:06d}.jsonl``. Each file is written under a temporary name, fsynced and
renamed atomically; the errors file is renamed first, so the existence of ``part-i`` is the commit
point of chunk ``i``. :meth:`ChunkedWriter.finalize` joins the parts into ``OUT``::

    writer = ChunkedWriter("run.parquet", fingerprint={"input": sha}, chunk_size=1000)
    chunks = iter_chunks("answers.jsonl", chunk_size=1000, skip=writer.records_done)
    for i, chunk in enumerate(chunks, start=writer.completed_chunks):
        writer.write_chunk(i, scored_rows(chunk), bad_rows(chunk))
    out_path, errors_path = writer.finalize()
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from evalsuite.errors import ConfigError, ResumeError

OUTPUT_FORMATS = (".jsonl", ".parquet", ".csv")

_JOB_FILE = "job.json"
_JOB_FORMAT = 1
_PART = re.compile(r"part-(\d{6})\.parquet")
_ERRORS = re.compile(r"errors-(\d{6})\.jsonl")
_TMP_SUFFIX = ".tmp"


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


class ChunkedWriter:
    """Write scored chunks to a staging directory and join them into one output file at the end.

    Re-opening the same output with the same ``fingerprint`` resumes after the last committed
    chunk: read the input with ``skip=writer.records_done`` and number chunks from
    ``writer.completed_chunks``. A different fingerprint raises :class:`ResumeError`.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        fingerprint: Mapping[str, Any],
        chunk_size: int,
        overwrite: bool = False,
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
        self._trash = self.out.with_name(self.out.name + ".partial.done")
        # Round-trip through JSON so a stored and a fresh fingerprint compare equal (tuples → lists).
        self._job = json.loads(
            json.dumps({"format": _JOB_FORMAT, "chunk_size": chunk_size, "fingerprint": dict(fingerprint)})
        )
        self._finalized = False

        shutil.rmtree(self._trash, ignore_errors=True)  # left by a crash at the very end of finalize()
        if overwrite:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.out.unlink(missing_ok=True)
            self.errors_path.unlink(missing_ok=True)
        elif self.out.exists() and not self.staging.exists():
            raise ResumeError(f"{self.out} already exists; pass --overwrite to replace it")
        self._completed = self._open_staging()

    # ----------------------------------------------------------------------------------------
    # Opening and resuming

    def _open_staging(self) -> int:
        job_file = self.staging / _JOB_FILE
        if self.staging.is_dir() and job_file.is_file():
            stored = json.loads(job_file.read_text(encoding="utf-8"))
            if stored != self._job:
                raise ResumeError(
                    f"{self.staging} holds a partial output of a different job "
                    f"(differs in: {', '.join(_differences(stored, self._job))}); "
                    f"pass --overwrite to start over"
                )
            return self._recover()
        # No job file: the previous run died before writing anything worth keeping.
        shutil.rmtree(self.staging, ignore_errors=True)
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

    def write_chunk(self, chunk_index: int, table: pl.DataFrame, errors: Sequence[Mapping[str, Any]]) -> None:
        """Commit chunk ``chunk_index``: its scored rows and the rows of its bad records."""
        if self._finalized:
            raise RuntimeError("write_chunk() after finalize()")
        if chunk_index != self._completed:
            # Chunks are committed in order, so "the first missing part" is always the resume point.
            raise ValueError(f"expected chunk {self._completed}, got chunk {chunk_index}")
        if errors:
            lines = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in errors)
            _write_bytes_atomically(self.staging / f"errors-{chunk_index:06d}.jsonl", lines.encode("utf-8"))
        part = self.staging / f"part-{chunk_index:06d}.parquet"
        tmp = part.with_name(part.name + _TMP_SUFFIX)
        table.write_parquet(tmp)
        commit_file(tmp, part)
        self._completed += 1

    def finalize(self) -> tuple[Path, Path | None]:
        """Join the committed chunks into ``OUT`` (and ``<stem>.errors.jsonl``), remove the staging dir.

        Returns ``(out_path, errors_path)``; ``errors_path`` is ``None`` when no record was bad.
        """
        if self._finalized:
            raise RuntimeError("finalize() called twice")
        parts = [self.staging / f"part-{i:06d}.parquet" for i in range(self._completed)]
        errors = [self.staging / f"errors-{i:06d}.jsonl" for i in range(self._completed)]
        errors_path = self._join_errors([p for p in errors if p.is_file()])
        tmp = self.staging / ("output" + _TMP_SUFFIX)
        self._join_parts(parts, tmp)
        commit_file(tmp, self.out)
        # Rename before deleting: a crash mid-delete must not leave a staging dir without its job
        # file, which a re-run would take for a fresh start of a job that has in fact finished.
        os.replace(self.staging, self._trash)
        _fsync_dir(self.out.parent)
        shutil.rmtree(self._trash)
        self._finalized = True
        return self.out, errors_path

    def _join_errors(self, files: list[Path]) -> Path | None:
        if not any(path.stat().st_size for path in files):
            self.errors_path.unlink(missing_ok=True)  # stale from an earlier run
            return None
        tmp = self.staging / ("errors" + _TMP_SUFFIX)
        with tmp.open("wb") as sink:
            for path in files:
                with path.open("rb") as source:
                    shutil.copyfileobj(source, sink)
        commit_file(tmp, self.errors_path)
        return self.errors_path

    def _join_parts(self, parts: list[Path], tmp: Path) -> None:
        if not parts:
            if self.format == ".parquet":
                pl.DataFrame().write_parquet(tmp)
            else:
                tmp.write_bytes(b"")
            return
        # diagonal_relaxed: chunks may lack a column or have it all-null (dtype Null) where others do not.
        frame = pl.concat([pl.scan_parquet(part) for part in parts], how="diagonal_relaxed")
        if self.format == ".parquet":
            frame.sink_parquet(tmp)
        elif self.format == ".jsonl":
            frame.sink_ndjson(tmp)
        else:
            frame.with_columns(json_encode_nested(frame.collect_schema())).sink_csv(tmp)


def json_encode_nested(schema: pl.Schema) -> list[pl.Expr]:
    """CSV cannot hold lists or structs: write them as JSON text (which the readers decode back)."""
    return [
        pl.col(name).map_batches(_to_json_strings, return_dtype=pl.String, is_elementwise=True)
        for name, dtype in schema.items()
        if dtype.is_nested()
    ]


def _to_json_strings(series: pl.Series) -> pl.Series:
    values = [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in series.to_list()]
    return pl.Series(series.name, values, dtype=pl.String)


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    stored_fp, current_fp = stored.get("fingerprint", {}), current.get("fingerprint", {})
    keys = [k for k in ("format", "chunk_size") if stored.get(k) != current.get(k)]
    keys += sorted(k for k in stored_fp.keys() | current_fp.keys() if stored_fp.get(k) != current_fp.get(k))
    return keys or ["job file"]
