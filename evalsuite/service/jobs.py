"""Persistent batch jobs: accepted durably, run one at a time, resumed after a crash.

A job is *accepted* only once its input file is fsynced into ``<directory>/<id>/input<ext>`` and its
row is committed to ``<directory>/jobs.sqlite``. One worker thread runs queued jobs in submission
order through :meth:`Scorer.score_file`, whose chunked, checkpointed output means a job interrupted
by ``kill -9`` resumes on the next :meth:`JobManager.start` with every record written exactly once::

    manager = JobManager(Path("/var/lib/evalsuite"), scorer_for, model_lock, allowed_roots=[Path("/data")])
    manager.start()
    job = manager.submit_path("/data/answers.jsonl", metrics=["toxicity"], on_error="skip")
    ...
    manager.get(job.id).state            # "queued" → "running" → "succeeded" | "failed"
    manager.results_path(job.id)         # the scored JSONL, once succeeded

A job submitted with an ``owner`` (the name of the submitter's API key, never the key) is visible
only to that owner: ``get(id, visible_to=other)`` answers as for an unknown id. Jobs without an
owner (an open server, or jobs from before owners were recorded) are visible to every caller.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError, EvalsuiteError, InputError, ResumeError
from evalsuite.records import CANONICAL_FIELDS, SUPPORTED_EXTENSIONS, commit_file, count_records

JobState = Literal["queued", "running", "succeeded", "failed"]
OnError = Literal["fail", "skip"]

OUTPUT_NAME = "output.jsonl"
DATABASE_NAME = "jobs.sqlite"
PROGRESS_WRITE_INTERVAL_S = 0.5  # progress is kept in memory; the database sees it at most this often
_COPY_BLOCK = 1 << 20
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer server path cannot name a file
_SCHEMA_VERSION = 2  # 2: the owner column
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order, the order jobs run in
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    metrics TEXT NOT NULL,                  -- JSON list of metric names
    on_error TEXT NOT NULL,
    fields TEXT,                            -- JSON {canonical: column} or NULL
    source TEXT NOT NULL,                   -- the name the submitter knows the input by
    input TEXT NOT NULL,                    -- file name of the input inside the job directory
    records_total INTEGER,
    records_done INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    error TEXT,
    summary TEXT,                           -- JSON list of summary rows
    owner TEXT                              -- name of the submitter's API key; NULL: visible to all
)
"""
# Visible to a caller: ownerless, or theirs; a NULL caller (an open server) sees every job.
_VISIBLE = "(?1 IS NULL OR owner IS NULL OR owner = ?1)"

log = logging.getLogger(__name__)


class PayloadTooLargeError(InputError):
    """An upload larger than the server accepts (HTTP 413); nothing of it is kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"upload is larger than the limit of {limit} bytes", field="file")


class JobInfo(BaseModel):
    """What a client sees of a job."""

    id: str
    state: JobState
    metrics: list[str]
    on_error: OnError
    records_total: int | None
    records_done: int
    errors: int
    created_at: str  # ISO-8601 UTC
    updated_at: str
    error: str | None = None  # the message when failed
    summary: list[dict[str, Any]] | None = None  # the run's summary rows when succeeded


class _StopRequestedError(Exception):
    """Raised inside a running job when the manager stops; the job stays resumable."""


class _ChunkLockedScorer(Scorer):
    """A view of a served Scorer that holds the model lock only around each chunk's model work.

    It shares the served scorer's state (no ``super().__init__``) and delegates model work to the
    served object itself, so a subclass's overrides still apply, the served object is never
    modified, and interactive requests interleave between a job's chunks.
    """

    def __init__(
        self, served: Scorer, model_lock: AbstractContextManager[Any], stopping: threading.Event
    ) -> None:
        self.__dict__.update(served.__dict__)
        self._served = served
        self._model_lock = model_lock
        self._stopping = stopping

    def score_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        if self._stopping.is_set():
            raise _StopRequestedError  # before scoring: this chunk is not committed and is redone on resume
        with self._model_lock:
            return self._served.score_records(records)

    def _fit_corpus(self, records: Iterable[dict[str, Any]]) -> None:
        # Only corpus metrics (e.g. BERTScore idf) touch the models here; a plain validation pass
        # must not block interactive requests for the length of the file.
        if any(metric.needs_corpus for metric in self.metrics):
            with self._model_lock:
                self._served._fit_corpus(records)
        else:
            self._served._fit_corpus(records)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def input_extension(filename: str) -> str:
    """The supported extension ``filename`` ends with, or :class:`ConfigError`.

    >>> input_extension("answers.JSONL.gz")
    '.jsonl.gz'
    """
    name = filename.lower()
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):  # ".jsonl.gz" before ".gz"
        if name.endswith(ext):
            return ext
    raise ConfigError(
        f"unsupported file type {Path(filename).name!r}; expected one of {', '.join(SUPPORTED_EXTENSIONS)}"
    )


def _check_job_options(
    metrics: Sequence[str], on_error: str, fields: Mapping[str, str] | None
) -> tuple[list[str], OnError, dict[str, str] | None]:
    names = list(metrics)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ConfigError(f"metrics must be a non-empty list of metric names, got {names!r}")
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if fields:
        for canonical, column in fields.items():
            if canonical not in CANONICAL_FIELDS:
                raise ConfigError(
                    f"fields: unknown field {canonical!r}; expected one of {', '.join(CANONICAL_FIELDS)}"
                )
            if not isinstance(column, str) or not column:
                raise ConfigError(f"fields: {canonical!r} must map to a column name, got {column!r}")
    checked: OnError = "fail" if on_error == "fail" else "skip"
    return names, checked, dict(fields) if fields else None


def _copy_stream(stream: BinaryIO, target: Path, max_bytes: int | None) -> None:
    """Copy ``stream`` into ``target`` durably, refusing it as soon as it passes ``max_bytes``."""
    written = 0
    with target.open("wb") as sink:
        while block := stream.read(_COPY_BLOCK):
            written += len(block)
            if max_bytes is not None and written > max_bytes:
                raise PayloadTooLargeError(max_bytes)
            sink.write(block)
        sink.flush()
        os.fsync(sink.fileno())


def _finite(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # NaN is not JSON: a summary must survive the database and the HTTP response.
    return [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        for row in rows
    ]


class JobManager:
    """The job table and its one worker thread. Thread-safe; call :meth:`start` before submitting.

    ``scorer_for(metric_names)`` returns a Scorer over the served metrics; the manager does not close
    it (the caller owns its lifetime). ``model_lock`` is held around each chunk's model work.
    ``allowed_roots`` are the directories :meth:`submit_path` may read from (none: refused).
    """

    def __init__(
        self,
        directory: Path,
        scorer_for: Callable[[list[str]], Scorer],
        model_lock: AbstractContextManager[Any],
        *,
        allowed_roots: Sequence[Path] = (),
    ) -> None:
        self.directory = Path(directory)
        self._scorer_for = scorer_for
        self._model_lock = model_lock
        self._allowed_roots = [Path(root).resolve() for root in allowed_roots]
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.RLock()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._live: tuple[str, int] | None = None  # (job id, records done) of the running job

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the job table, re-queue interrupted jobs and start the worker thread."""
        if self._worker is not None and self._worker.is_alive():
            # Two workers on one directory would both write the same job's output.
            raise RuntimeError("the job worker is still running; call stop() and let it finish first")
        self.directory.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.directory / DATABASE_NAME, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an accepted job must survive a power cut, not just kill -9
        db.execute("PRAGMA busy_timeout=5000")
        _migrate(db, self.directory / DATABASE_NAME)
        with self._db_lock:
            self._db = db
            # Jobs cut off by a crash or a stop resume from their checkpoints, in their original order.
            self._execute("UPDATE jobs SET state='queued', updated_at=? WHERE state='running'", (_now(),))
        self._remove_orphans()
        self._stopping.clear()
        self._worker = threading.Thread(target=self._run_worker, name="evalsuite-jobs", daemon=True)
        self._worker.start()
        self._wakeup.set()

    def stop(self, timeout: float = 10) -> None:
        """Stop the worker at the next chunk boundary (the running job resumes on the next start)."""
        self._stopping.set()
        self._wakeup.set()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                log.warning("job worker still busy after %.1fs; it stops after its current chunk", timeout)
            else:
                self._worker = None
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- submitting -----------------------------------------------------------------------------
    def submit_upload(
        self,
        filename: str,
        stream: BinaryIO,
        *,
        metrics: list[str],
        on_error: str,
        fields: dict[str, str] | None = None,
        max_bytes: int | None = None,
        owner: str | None = None,
    ) -> JobInfo:
        """Accept an uploaded file: streamed to disk (at most ``max_bytes``), fsynced, then queued.

        Raises :class:`ConfigError` for a bad extension or option and :class:`PayloadTooLargeError`
        when the upload passes ``max_bytes``.
        """
        ext = input_extension(filename)
        options = _check_job_options(metrics, on_error, fields)
        return self._accept(
            Path(filename).name, ext, lambda target: _copy_stream(stream, target, max_bytes), options, owner
        )

    def submit_path(
        self,
        path: str,
        *,
        metrics: list[str],
        on_error: str,
        fields: dict[str, str] | None = None,
        owner: str | None = None,
    ) -> JobInfo:
        """Accept a server-side file under an allowed root; it is copied, so later edits cannot change the job.

        Raises :class:`ConfigError` if the path is not a path name (empty, too long, a NUL or a
        lone surrogate in it), is outside every allowed root, or is not a readable file.
        """
        if not self._allowed_roots:
            raise ConfigError(
                "server-side paths are disabled; the operator enables them with --allow-path DIR"
            )
        resolved = _resolve_under(path, self._allowed_roots)
        ext = input_extension(resolved.name)
        options = _check_job_options(metrics, on_error, fields)

        def copy(target: Path) -> None:
            try:
                source = resolved.open("rb")
            except OSError as error:  # e.g. no permission: the submitter's mistake, not the server's
                raise ConfigError(f"path {path!r} cannot be read: {error.strerror}") from None
            with source:
                _copy_stream(source, target, None)

        return self._accept(path, ext, copy, options, owner)

    def _accept(
        self,
        source: str,
        ext: str,
        write_input: Callable[[Path], None],
        options: tuple[list[str], OnError, dict[str, str] | None],
        owner: str | None,
    ) -> JobInfo:
        self._require_started()
        metrics, on_error, fields = options
        job_id = uuid.uuid4().hex
        job_dir = self.directory / job_id
        job_dir.mkdir()
        final = job_dir / f"input{ext}"
        tmp = job_dir / f"input{ext}.upload"
        try:
            write_input(tmp)
            commit_file(tmp, final)  # fsync, rename, fsync the directory
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        now = _now()
        with self._db_lock:
            self._execute(
                "INSERT INTO jobs (id, state, metrics, on_error, fields, source, input, created_at, updated_at,"
                " owner) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    json.dumps(metrics),
                    on_error,
                    _json_or_none(fields),
                    source,
                    final.name,
                    now,
                    now,
                    owner,
                ),
            )
        self._wakeup.set()
        info = self.get(job_id)
        if info is None:  # the row was committed just above: only a broken database gets here
            raise RuntimeError(
                f"job {job_id} was committed but cannot be read back from {self.directory / DATABASE_NAME}"
            )
        return info

    # -- reading --------------------------------------------------------------------------------
    def get(self, job_id: str, *, visible_to: str | None = None) -> JobInfo | None:
        """The job's current state, or ``None`` for an unknown id or another owner's job.

        ``visible_to`` is the caller's key name; ``None`` (an open server) sees every job.
        """
        row = self._row(job_id, visible_to)
        if row is None:
            return None
        info = _job_info(row)
        live = self._live
        if live is not None and live[0] == job_id and info.state == "running":
            info.records_done = max(info.records_done, live[1])
        return info

    def results_path(self, job_id: str, *, visible_to: str | None = None) -> Path:
        """The finished JSONL output of a succeeded job; :class:`ConfigError` otherwise (as for ``get``)."""
        row = self._row(job_id, visible_to)
        if row is None:
            raise ConfigError(f"no job {job_id!r}")
        if row["state"] != "succeeded":
            raise ConfigError(f"job {job_id} is {row['state']}, not succeeded; it has no results")
        return self.directory / job_id / OUTPUT_NAME

    def queue_depth(self) -> int:
        """Jobs waiting or running."""
        with self._db_lock:
            return int(
                self._execute("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
            )

    def state_counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present, for a gauge)."""
        counts = dict.fromkeys(("queued", "running", "succeeded", "failed"), 0)
        with self._db_lock:
            for state, count in self._execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                counts[state] = count
        return counts

    # -- the worker -----------------------------------------------------------------------------
    def _run_worker(self) -> None:
        while not self._stopping.is_set():
            try:
                row = self._next_queued()
            except (sqlite3.Error, RuntimeError):
                if self._stopping.is_set():
                    return  # the database was closed under us by stop()
                raise
            if row is None:
                self._wakeup.wait(timeout=1.0)
                self._wakeup.clear()
                continue
            try:
                self._run_job(row)
            except _StopRequestedError:
                self._update(row["id"], state="queued")
                return
            except Exception as error:  # a bug must fail one job, not kill the worker
                log.exception("job %s failed with an unexpected error", row["id"])
                message = f"internal error while running the job ({type(error).__name__}); see the server log"
                self._update(row["id"], state="failed", error=message)

    def _next_queued(self) -> sqlite3.Row | None:
        with self._db_lock:
            row: sqlite3.Row | None = self._execute(
                "SELECT * FROM jobs WHERE state='queued' ORDER BY seq LIMIT 1"
            ).fetchone()
        return row

    def _run_job(self, row: sqlite3.Row) -> None:
        job_id = row["id"]
        job_dir = self.directory / job_id
        source = job_dir / row["input"]
        total = _count_or_none(source)
        self._update(job_id, state="running", records_total=total, records_done=0)
        done = 0
        last_write = time.monotonic()

        def progress(records: int) -> None:
            nonlocal done, last_write
            done += records
            self._live = (job_id, done)
            if time.monotonic() - last_write >= PROGRESS_WRITE_INTERVAL_S:
                self._update(job_id, records_done=done)
                last_write = time.monotonic()
            if self._stopping.is_set():
                raise _StopRequestedError  # after the chunk was committed: resume starts with the next one

        try:
            scorer = _ChunkLockedScorer(
                self._scorer_for(json.loads(row["metrics"])), self._model_lock, self._stopping
            )
            arguments: dict[str, Any] = {
                "fields": json.loads(row["fields"]) if row["fields"] else None,
                "on_error": row["on_error"],
                "progress": progress,
            }
            output = job_dir / OUTPUT_NAME
            try:
                run = scorer.score_file(source, output, **arguments)
            except ResumeError:
                # The partial output belongs to another configuration (the server restarted with a
                # different chunk size or metric config) or the job finished just before a crash:
                # start it afresh, which still writes every record once.
                log.warning("job %s: cannot resume its partial output, starting it afresh", job_id)
                done = 0
                run = scorer.score_file(source, output, overwrite=True, **arguments)
        except EvalsuiteError as error:
            # Name the input as the submitter knows it, not by its path on the server.
            message = str(error).replace(str(source), row["source"])
            self._update(job_id, state="failed", error=message, records_done=done)
        else:
            self._update(
                job_id,
                state="succeeded",
                records_done=run.records + run.errors,
                records_total=run.records + run.errors,
                errors=run.errors,
                summary=json.dumps(_finite(run.summary.to_dicts())),
            )
        finally:
            self._live = None

    # -- database -------------------------------------------------------------------------------
    def _require_started(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("JobManager.start() has not been called (or stop() was)")
        return self._db

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._db_lock:
            return self._require_started().execute(sql, parameters)

    def _row(self, job_id: str, visible_to: str | None = None) -> sqlite3.Row | None:
        with self._db_lock:
            row: sqlite3.Row | None = self._execute(
                f"SELECT * FROM jobs WHERE id=?2 AND {_VISIBLE}", (visible_to, job_id)
            ).fetchone()
        return row

    def _update(self, job_id: str, **values: Any) -> None:
        values["updated_at"] = _now()
        assignments = ", ".join(f"{column}=?" for column in values)  # column names are ours, not input
        with self._db_lock:
            if self._db is None:
                return  # stopped: the job is re-queued on the next start
            self._execute(f"UPDATE jobs SET {assignments} WHERE id=?", (*values.values(), job_id))

    def _remove_orphans(self) -> None:
        """Delete job directories whose row was never committed (a crash mid-upload)."""
        with self._db_lock:
            known = {row[0] for row in self._execute("SELECT id FROM jobs")}
        for path in self.directory.iterdir():
            if path.is_dir() and _is_job_id(path.name) and path.name not in known:
                shutil.rmtree(path, ignore_errors=True)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create the job table, or bring one of an older schema up to date (its jobs are kept)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > _SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has job schema {version}, newer than this evalsuite's {_SCHEMA_VERSION}; upgrade evalsuite"
        )
    db.execute(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "owner" not in columns:  # schema 1: its jobs have no owner, so every caller keeps seeing them
        db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
    db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")


def _resolve_under(path: str, roots: Sequence[Path]) -> Path:
    """``path`` resolved, if it names a readable file under one of ``roots``; :class:`ConfigError` if not.

    The text is checked first: a NUL, a lone surrogate or an over-long name makes the operating
    system raise ValueError or OSError rather than answer, and must be a refusal, not a crash.
    """
    if not path or len(path) > MAX_PATH_CHARS:
        raise ConfigError(f"path must have 1 to {MAX_PATH_CHARS} characters, got {len(path)}")
    if "\x00" in path:
        raise ConfigError("path must not contain a NUL character")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("path is not valid Unicode (it has a lone surrogate)") from None
    try:
        # resolve() follows symlinks and folds "..", so neither can escape a root.
        resolved = Path(path).resolve()
        inside = any(resolved.is_relative_to(root) for root in roots)
        is_file = inside and resolved.is_file()
    except (OSError, ValueError, RuntimeError):  # a name over NAME_MAX; a symlink loop (RuntimeError)
        raise ConfigError(f"path {path!r} cannot be read") from None
    if not inside:
        raise ConfigError(f"path {path!r} is not under an allowed root")
    if not is_file:
        raise ConfigError(f"path {path!r} does not exist or is not a file")
    return resolved


def _is_job_id(name: str) -> bool:
    return len(name) == 32 and all(char in "0123456789abcdef" for char in name)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _count_or_none(path: Path) -> int | None:
    # A file the counter cannot read fails in score_file with a message naming the problem.
    try:
        return count_records(path)
    except (OSError, ValueError, EOFError, zlib.error):
        return None


def _job_info(row: sqlite3.Row) -> JobInfo:
    return JobInfo(
        id=row["id"],
        state=row["state"],
        metrics=json.loads(row["metrics"]),
        on_error=row["on_error"],
        records_total=row["records_total"],
        records_done=row["records_done"],
        errors=row["errors"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        error=row["error"],
        summary=json.loads(row["summary"]) if row["summary"] else None,
    )
