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
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl

from evalsuite._validation import check_positive_int
from evalsuite.errors import ConfigError, ResumeError
from evalsuite.manifest import RunManifest
from evalsuite.records.lock import OutputLock
from evalsuite.records.tables import JSON_COLUMNS_KEY, table_from_rows, unify_parts
from evalsuite.records.writers import (
    TMP_SUFFIX,
    commit_file,
    fsync_dir,
    json_line,
    output_format,
    write_bytes_atomically,
    write_table,
)

__all__ = ["ChunkedWriter", "OutputLock", "table_from_rows"]


_JOB_FILE = "job.json"


_JOB_FORMAT = 1


# Written into staging before the joined errors file is committed beside OUT: from then on that
# file is this job's own, and a resumed finalize may replace or delete it.
_OWNS_ERRORS_FILE = "owns-errors-file"


_PART = re.compile(r"part-(\d{6})\.parquet")


_ERRORS = re.compile(r"errors-(\d{6})\.jsonl")


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
        self.format = output_format(out)
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
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
            [child for child in path.iterdir() if not child.name.endswith(TMP_SUFFIX)]
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
            earlier = RunManifest.read(self.manifest)
        except (ConfigError, OSError):
            return False
        if "errors_file" in earlier.model_fields_set:
            listed = earlier.errors_file
            return listed is not None and Path(listed).name == self.errors_path.name
        # Manifests before errors_file was recorded: the run into this output wrote it.
        return earlier.output is not None and Path(earlier.output).name == self.out.name

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
        write_bytes_atomically(job_file, json.dumps(self._job, indent=2, sort_keys=True).encode("utf-8"))
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
                path.name.endswith(TMP_SUFFIX)
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
            write_bytes_atomically(self.staging / f"errors-{chunk_index:06d}.jsonl", lines)
        part = self.staging / f"part-{chunk_index:06d}.parquet"
        tmp = part.with_name(part.name + TMP_SUFFIX)
        table.write_parquet(tmp, metadata={JSON_COLUMNS_KEY: json.dumps(sorted(json_columns))})
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
        tmp = self.staging / ("output" + TMP_SUFFIX)
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
            fsync_dir(self.out.parent)
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
        write_bytes_atomically(self.staging / _OWNS_ERRORS_FILE, b"")
        tmp = self.staging / ("errors" + TMP_SUFFIX)
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
        frames, json_columns = unify_parts(parts)
        # diagonal_relaxed: chunks may lack a column or have it all-null (dtype Null) where others do not.
        write_table(pl.concat(frames, how="diagonal_relaxed"), tmp, fmt=self.format)
        return json_columns


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    stored_fp, current_fp = stored.get("fingerprint", {}), current.get("fingerprint", {})
    keys = [k for k in ("format", "chunk_size") if stored.get(k) != current.get(k)]
    keys += sorted(k for k in stored_fp.keys() | current_fp.keys() if stored_fp.get(k) != current_fp.get(k))
    return keys or ["job file"]
