"""The output lock: one run at a time writes an output, and a second one is told which run holds it."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import IO

from evalsuite.errors import ResumeError

try:  # POSIX only: elsewhere two runs into one output are not kept apart.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


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
