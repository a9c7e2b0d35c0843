"""Persistent score cache (SQLite), keyed by (metric config hash, record content hash).

Several processes may share one cache file: it runs in WAL mode with a busy timeout, and every write is
one short ``BEGIN IMMEDIATE`` transaction.

A cache is only a shortcut, so a damaged one never stops a run: a file that is not a database, a
corrupt page met at any point, or a directory in its place is moved aside (``scores.sqlite.corrupt-<time>``)
with a warning and a fresh cache is started; if even that fails the run goes on without a cache.

Example:
    >>> with ScoreCache(":memory:") as cache:
    ...     cache.put_many("cfg1", {"rec1": {"f1": 0.9}})
    ...     cache.get_many("cfg1", ["rec1", "rec2"])
    {'rec1': {'f1': 0.9}}
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import platformdirs

__all__ = ["ScoreCache", "default_cache_path"]

CACHE_DIR_ENV = "EVALSUITE_CACHE_DIR"
# SQLite's default limit on bound variables in one statement is 999 in older builds.
_BATCH = 500
# Long enough to ride out another process's write transaction; each one is short.
_BUSY_TIMEOUT_S = 60.0
# SQLite's primary result codes for a damaged database (a locked one is SQLITE_BUSY: never moved aside).
_SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 14, 26

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    config_hash TEXT NOT NULL,
    record_key TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (config_hash, record_key)
) WITHOUT ROWID
"""


def default_cache_path() -> pathlib.Path:
    """``<user cache dir>/evalsuite/scores.sqlite``; ``EVALSUITE_CACHE_DIR`` overrides the folder.

    Example:
        >>> default_cache_path().name
        'scores.sqlite'
    """
    override = os.environ.get(CACHE_DIR_ENV)
    folder = (
        pathlib.Path(override).expanduser()
        if override
        else pathlib.Path(platformdirs.user_cache_dir("evalsuite"))
    )
    return folder / "scores.sqlite"


class ScoreCache:
    """Scores keyed by (metric config hash, record content hash).

    Values are JSON objects (floats, None, NaN, lists, dicts). One connection per object, shared safely
    between threads; open one object per process.

    Example:
        >>> cache = ScoreCache()  # doctest: +SKIP
        >>> hits = cache.get_many(config_hash, record_keys)  # doctest: +SKIP
        >>> cache.put_many(config_hash, {key: {"f1": 0.91} for key in misses})  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = pathlib.Path(path) if path is not None else default_cache_path()
        self._in_memory = str(self.path) == ":memory:"
        self._lock = threading.Lock()
        self._disabled = False  # a damaged cache that could not be replaced: every lookup misses
        self._connection: sqlite3.Connection | None = None
        try:
            self._connection = self._connect()
        except sqlite3.DatabaseError as error:
            self._recover(error)

    def _connect(self) -> sqlite3.Connection:
        if not self._in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are opened explicitly, so writes can take the write lock
        # up front (BEGIN IMMEDIATE) where the busy timeout applies.
        connection = sqlite3.connect(
            str(self.path), timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            if not self._in_memory:
                connection.execute("PRAGMA journal_mode = WAL")
                # Safe in WAL mode; losing the last writes on power loss only costs recomputation.
                connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        return connection

    def _is_damage(self, error: sqlite3.DatabaseError) -> bool:
        code = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return True
        return code == _SQLITE_CANTOPEN and self.path.is_dir()

    def _recover(self, error: sqlite3.DatabaseError) -> None:
        """Move a damaged cache aside and start a fresh one; re-raise what is not damage (a lock)."""
        if self._in_memory or not self._is_damage(error):
            raise error
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        aside = self.path.with_name(
            f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        )
        try:
            for suffix in ("-wal", "-shm"):
                companion = self.path.with_name(self.path.name + suffix)
                if companion.exists():
                    os.replace(companion, aside.with_name(aside.name + suffix))
            os.replace(self.path, aside)
            self._connection = self._connect()
        except (OSError, sqlite3.Error) as failure:
            self._disabled = True
            warnings.warn(
                f"the score cache {self.path} is damaged ({error}) and could not be replaced ({failure}); "
                "this run goes on without a cache",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        warnings.warn(
            f"the score cache {self.path} was damaged ({error}): moved it to {aside.name} and started a "
            "fresh one (scores are recomputed)",
            RuntimeWarning,
            stacklevel=3,
        )

    def get_many(self, config_hash: str, record_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The cached values among ``record_keys`` (hits only).

        Example:
            >>> ScoreCache(":memory:").get_many("cfg", ["missing"])
            {}
        """
        keys = list(dict.fromkeys(record_keys))
        hits: dict[str, dict[str, Any]] = {}
        with self._lock:
            if self._disabled:
                return hits
            try:
                self._select(config_hash, keys, hits)
            except sqlite3.DatabaseError as error:
                self._recover(error)
                return {}  # the fresh cache is empty
        return hits

    def _select(self, config_hash: str, keys: list[str], hits: dict[str, dict[str, Any]]) -> None:
        connection = self._open_connection()
        for start in range(0, len(keys), _BATCH):
            chunk = keys[start : start + _BATCH]
            placeholders = ",".join("?" * len(chunk))
            rows = connection.execute(
                "SELECT record_key, value FROM scores"
                f" WHERE config_hash = ? AND record_key IN ({placeholders})",
                (config_hash, *chunk),
            )
            for key, value in rows:
                try:
                    hits[key] = json.loads(value)
                except ValueError:
                    continue  # a damaged value is a miss: the score is computed again

    def put_many(self, config_hash: str, values: Mapping[str, Mapping[str, Any]]) -> None:
        """Store (or replace) values in one transaction.

        Example:
            >>> ScoreCache(":memory:").put_many("cfg", {"rec1": {"f1": 0.9, "tokens": [0.1, 0.2]}})
        """
        if not values:
            return
        created = time.time()
        rows = [
            (config_hash, key, json.dumps(dict(value), default=_json_default), created)
            for key, value in values.items()
        ]
        with self._lock:
            if self._disabled:
                return
            try:
                self._insert(rows)
            except sqlite3.DatabaseError as error:
                self._recover(error)
                if not self._disabled:
                    self._insert(rows)

    def _insert(self, rows: list[tuple[str, str, str, float]]) -> None:
        connection = self._open_connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(
                "INSERT OR REPLACE INTO scores (config_hash, record_key, value, created) VALUES (?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def clear(self, config_hash: str | None = None) -> int:
        """Delete the entries of one config (or all); returns how many were deleted.

        Example:
            >>> ScoreCache(":memory:").clear()
            0
        """
        with self._lock:
            if self._disabled:
                return 0
            connection = self._open_connection()
            if config_hash is None:
                cursor = connection.execute("DELETE FROM scores")
            else:
                cursor = connection.execute("DELETE FROM scores WHERE config_hash = ?", (config_hash,))
            return cursor.rowcount

    def stats(self) -> dict[str, int]:
        """``entries``, ``configs`` (distinct config hashes) and ``size_bytes`` of the database.

        Example:
            >>> ScoreCache(":memory:").stats()["entries"]
            0
        """
        with self._lock:
            if self._disabled:
                return {"entries": 0, "configs": 0, "size_bytes": 0}
            connection = self._open_connection()
            entries, configs = connection.execute(
                "SELECT COUNT(*), COUNT(DISTINCT config_hash) FROM scores"
            ).fetchone()
            (page_count,) = connection.execute("PRAGMA page_count").fetchone()
            (page_size,) = connection.execute("PRAGMA page_size").fetchone()
        return {"entries": int(entries), "configs": int(configs), "size_bytes": int(page_count * page_size)}

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> ScoreCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ScoreCache({str(self.path)!r})"

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError(f"{self!r} is closed")
        return self._connection


def _json_default(value: Any) -> Any:
    # Metrics often hand back numpy scalars and arrays, which json cannot encode by itself.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cache values must be JSON-encodable, got {type(value).__name__}")
