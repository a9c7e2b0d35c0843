"""Persistent batch jobs: accepted durably, run one at a time, resumed after a crash.

A job is *accepted* only once its input file is fsynced into ``<directory>/<id>/input<ext>`` and its
row is committed to ``<directory>/jobs.sqlite`` (:mod:`evalsuite.service.jobstore`). One worker
thread runs queued jobs in submission order through :meth:`Scorer.score_file`, whose chunked,
checkpointed output means a job interrupted by ``kill -9`` resumes on the next
:meth:`JobManager.start` with every record written exactly once::

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
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError, EvalsuiteError, ResumeError
from evalsuite.records import commit_file
from evalsuite.run import Hooks, check_on_error
from evalsuite.service.inputs import (
    JobOptions,
    PayloadTooLargeError,
    check_job_options,
    copy_stream,
    input_extension,
    resolve_under,
)
from evalsuite.service.jobstore import DATABASE_NAME, JobInfo, JobState, JobStore, finite_rows

__all__ = [
    "DATABASE_NAME",
    "OUTPUT_NAME",
    "JobInfo",
    "JobManager",
    "JobState",
    "PayloadTooLargeError",
    "input_extension",
]

OUTPUT_NAME = "output.jsonl"
PROGRESS_WRITE_INTERVAL_S = 0.5  # progress is kept in memory; the database sees it at most this often

log = logging.getLogger(__name__)


class _StopRequestedError(Exception):
    """Raised inside a running job when the manager stops; the job stays resumable."""


class JobManager:
    """The job table and its one worker thread. Thread-safe; call :meth:`start` before submitting.

    ``scorer_for(metric_names)`` returns a Scorer over the served metrics; the manager does not close
    it (the caller owns its lifetime). ``model_lock`` is held around each piece of a job's model
    work (:class:`evalsuite.run.Hooks`), so interactive requests interleave with a running job.
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
        self._store = JobStore(self.directory)
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
        self._store.open()
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
        self._store.close()

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
        options = check_job_options(metrics, on_error, fields)
        return self._accept(
            Path(filename).name, ext, lambda target: copy_stream(stream, target, max_bytes), options, owner
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
        resolved = resolve_under(path, self._allowed_roots)
        ext = input_extension(resolved.name)
        options = check_job_options(metrics, on_error, fields)

        def copy(target: Path) -> None:
            try:
                source = resolved.open("rb")
            except OSError as error:  # e.g. no permission: the submitter's mistake, not the server's
                raise ConfigError(f"path {path!r} cannot be read: {error.strerror}") from None
            with source:
                copy_stream(source, target, None)

        return self._accept(path, ext, copy, options, owner)

    def _accept(
        self,
        source: str,
        ext: str,
        write_input: Callable[[Path], None],
        options: JobOptions,
        owner: str | None,
    ) -> JobInfo:
        self._store.require_open()
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
        self._store.insert(
            job_id,
            metrics=metrics,
            on_error=on_error,
            fields=fields,
            source=source,
            input_name=final.name,
            owner=owner,
        )
        self._wakeup.set()
        info = self.get(job_id)
        if info is None:  # the row was committed just above: only a broken database gets here
            raise RuntimeError(f"job {job_id} was committed but cannot be read back from {self._store.path}")
        return info

    # -- reading --------------------------------------------------------------------------------
    def get(self, job_id: str, *, visible_to: str | None = None) -> JobInfo | None:
        """The job's current state, or ``None`` for an unknown id or another owner's job.

        ``visible_to`` is the caller's key name; ``None`` (an open server) sees every job.
        """
        info = self._store.info(job_id, visible_to)
        if info is None:
            return None
        live = self._live
        if live is not None and live[0] == job_id and info.state == "running":
            info.records_done = max(info.records_done, live[1])
        return info

    def results_path(self, job_id: str, *, visible_to: str | None = None) -> Path:
        """The finished JSONL output of a succeeded job; :class:`ConfigError` otherwise (as for ``get``)."""
        row = self._store.row(job_id, visible_to)
        if row is None:
            raise ConfigError(f"no job {job_id!r}")
        if row["state"] != "succeeded":
            raise ConfigError(f"job {job_id} is {row['state']}, not succeeded; it has no results")
        return self.directory / job_id / OUTPUT_NAME

    def queue_depth(self) -> int:
        """Jobs waiting or running."""
        return self._store.queue_depth()

    def state_counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present, for a gauge)."""
        return self._store.state_counts()

    # -- the worker -----------------------------------------------------------------------------
    def _run_worker(self) -> None:
        while not self._stopping.is_set():
            try:
                row = self._store.next_queued()
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
                self._store.update(row["id"], state="queued")
                return
            except Exception as error:  # a bug must fail one job, not kill the worker
                log.exception("job %s failed with an unexpected error", row["id"])
                message = f"internal error while running the job ({type(error).__name__}); see the server log"
                self._store.update(row["id"], state="failed", error=message)

    def _check_stopping(self) -> None:
        if self._stopping.is_set():
            raise _StopRequestedError  # before model work: this chunk is not committed and is redone on resume

    def _run_job(self, row: sqlite3.Row) -> None:
        job_id = row["id"]
        job_dir = self.directory / job_id
        source = job_dir / row["input"]
        self._store.update(job_id, state="running", records_done=0)
        done = 0
        last_write = time.monotonic()

        def counted(total: int) -> None:  # the input is read once for its count, hash and validation
            self._store.update(job_id, records_total=total)

        def progress(records: int) -> None:
            nonlocal done, last_write
            done += records
            self._live = (job_id, done)
            if time.monotonic() - last_write >= PROGRESS_WRITE_INTERVAL_S:
                self._store.update(job_id, records_done=done)
                last_write = time.monotonic()
            if self._stopping.is_set():
                raise _StopRequestedError  # after the chunk was committed: resume starts with the next one

        try:
            scorer = self._scorer_for(json.loads(row["metrics"]))
            arguments: dict[str, Any] = {
                "fields": json.loads(row["fields"]) if row["fields"] else None,
                "on_error": check_on_error(row["on_error"]),
                "progress": progress,
                "on_count": counted,
                "hooks": Hooks(model_lock=self._model_lock, check_cancelled=self._check_stopping),
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
            self._store.update(job_id, state="failed", error=message, records_done=done)
        else:
            self._store.update(
                job_id,
                state="succeeded",
                records_done=run.records + run.errors,
                records_total=run.records + run.errors,
                errors=run.errors,
                summary=json.dumps(finite_rows(run.summary.to_dicts())),
            )
        finally:
            self._live = None

    def _remove_orphans(self) -> None:
        """Delete job directories whose row was never committed (a crash mid-upload)."""
        known = self._store.ids()
        for path in self.directory.iterdir():
            if path.is_dir() and _is_job_id(path.name) and path.name not in known:
                shutil.rmtree(path, ignore_errors=True)


def _is_job_id(name: str) -> bool:
    return len(name) == 32 and all(char in "0123456789abcdef" for char in name)
