"""What a job is submitted with: its input file (an upload or a server path under an allowed root), checked
and copied durably, and its options (metric names, ``on_error``, field mapping)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from evalsuite._validation import invalid
from evalsuite.errors import ConfigError, InputError
from evalsuite.records import CANONICAL_FIELDS, SUPPORTED_EXTENSIONS
from evalsuite.run import OnError, check_on_error

__all__ = [
    "MAX_PATH_CHARS",
    "JobOptions",
    "PayloadTooLargeError",
    "check_job_options",
    "copy_stream",
    "input_extension",
    "resolve_under",
]

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer server path cannot name a file
_COPY_BLOCK = 1 << 20

JobOptions = tuple[list[str], OnError, dict[str, str] | None]


class PayloadTooLargeError(InputError):
    """An upload larger than the server accepts (HTTP 413); nothing of it is kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"upload is larger than the limit of {limit} bytes", field="file")


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


def check_job_options(metrics: Sequence[str], on_error: str, fields: Mapping[str, str] | None) -> JobOptions:
    """The options of a job, checked: metric names, ``on_error`` and the field mapping."""
    names = list(metrics)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise invalid("metrics", "a non-empty list of metric names", names)
    checked = check_on_error(on_error)
    if fields:
        for canonical, column in fields.items():
            if canonical not in CANONICAL_FIELDS:
                raise ConfigError(
                    f"fields: unknown field {canonical!r}; expected one of {', '.join(CANONICAL_FIELDS)}"
                )
            if not isinstance(column, str) or not column:
                raise invalid(f"fields[{canonical!r}]", "a column name", column)
    return names, checked, dict(fields) if fields else None


def copy_stream(stream: BinaryIO, target: Path, max_bytes: int | None) -> None:
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


def resolve_under(path: str, roots: Sequence[Path]) -> Path:
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
