"""The job table: ``<directory>/jobs.sqlite``, its schema and migrations, and what a client sees of a job.

:class:`JobStore` is the one place that speaks SQL; :class:`~evalsuite.service.jobs.JobManager`
accepts and runs jobs on top of it. Thread-safe: every statement runs under one lock.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from evalsuite.errors import ConfigError
from evalsuite.run import OnError

__all__ = ["DATABASE_NAME", "JobInfo", "JobState", "JobStore", "finite_rows"]

JobState = Literal["queued", "running", "succeeded", "failed"]

DATABASE_NAME = "jobs.sqlite"
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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def finite_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with NaN and infinity as ``None``: a summary must survive the database and the HTTP response."""
    return [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        for row in rows
    ]


class JobStore:
    """The job table of one directory; :meth:`open` it before use, :meth:`close` it after."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / DATABASE_NAME
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> None:
        """Open (creating or migrating) the table; jobs cut off by a crash or a stop are queued again."""
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an accepted job must survive a power cut, not just kill -9
        db.execute("PRAGMA busy_timeout=5000")
        try:
            _migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        with self._lock:
            self._db = db
            # They resume from their checkpoints, in their original order.
            self._execute("UPDATE jobs SET state='queued', updated_at=? WHERE state='running'", (now(),))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def require_open(self) -> sqlite3.Connection:
        db = self._db
        if db is None:
            raise RuntimeError("JobManager.start() has not been called (or stop() was)")
        return db

    # -- writing --------------------------------------------------------------------------------
    def insert(
        self,
        job_id: str,
        *,
        metrics: list[str],
        on_error: OnError,
        fields: dict[str, str] | None,
        source: str,
        input_name: str,
        owner: str | None,
    ) -> None:
        """Commit a queued job (its input is already in place)."""
        created = now()
        self._execute(
            "INSERT INTO jobs (id, state, metrics, on_error, fields, source, input, created_at, updated_at,"
            " owner) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                json.dumps(metrics),
                on_error,
                None if fields is None else json.dumps(fields),
                source,
                input_name,
                created,
                created,
                owner,
            ),
        )

    def update(self, job_id: str, **values: Any) -> None:
        """Set columns of a job (and its ``updated_at``); nothing once closed (the job is re-queued on open)."""
        values["updated_at"] = now()
        assignments = ", ".join(f"{column}=?" for column in values)  # column names are ours, not input
        with self._lock:
            if self._db is None:
                return
            self._execute(f"UPDATE jobs SET {assignments} WHERE id=?", (*values.values(), job_id))

    # -- reading --------------------------------------------------------------------------------
    def row(self, job_id: str, visible_to: str | None = None) -> sqlite3.Row | None:
        """The job's row, or ``None`` for an unknown id or another owner's job."""
        row: sqlite3.Row | None = self._execute(
            f"SELECT * FROM jobs WHERE id=?2 AND {_VISIBLE}", (visible_to, job_id)
        ).fetchone()
        return row

    def info(self, job_id: str, visible_to: str | None = None) -> JobInfo | None:
        row = self.row(job_id, visible_to)
        return None if row is None else _job_info(row)

    def next_queued(self) -> sqlite3.Row | None:
        """The job to run next: the oldest queued one."""
        row: sqlite3.Row | None = self._execute(
            "SELECT * FROM jobs WHERE state='queued' ORDER BY seq LIMIT 1"
        ).fetchone()
        return row

    def queue_depth(self) -> int:
        """Jobs waiting or running."""
        return int(
            self._execute("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
        )

    def state_counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present, for a gauge)."""
        counts = dict.fromkeys(("queued", "running", "succeeded", "failed"), 0)
        with self._lock:
            for state, count in self._execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                counts[state] = count
        return counts

    def ids(self) -> set[str]:
        return {row[0] for row in self._execute("SELECT id FROM jobs")}

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.require_open().execute(sql, parameters)


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
