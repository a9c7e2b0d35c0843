"""File layouts: the one place that knows how JSONL, gzip, CSV and Parquet inputs are laid out.

Each layout yields what it finds, a cut or damaged file included, so reading and counting agree.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from evalsuite.errors import ConfigError, InputError

_BLOCK = 1 << 20
Digest = Any  # a hashlib object: update(bytes-like)

SUPPORTED_EXTENSIONS = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".parquet", ".csv")


def extension_of(path: Path) -> str | None:
    name = path.name.lower()
    # Longest first, so ".jsonl.gz" is not taken for ".gz".
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return None


def checked_path(source: str | os.PathLike[str]) -> tuple[Path, str]:
    path = Path(source)
    ext = extension_of(path)
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


class _HashingReader(io.RawIOBase):
    """A raw file that feeds every byte read into ``digest``: a file is hashed as it is parsed."""

    def __init__(self, raw: IO[bytes], digest: Digest) -> None:
        self._raw = raw
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if count:
            self._digest.update(memoryview(buffer)[:count])
        return count or 0

    def close(self) -> None:
        # Hash what the parser left unread (a gzip trailer, a cut stream), so the digest is the file's.
        if not self.closed and not self._raw.closed:
            while block := self._raw.read(_BLOCK):
                self._digest.update(block)
            self._raw.close()
        super().close()


@contextmanager
def open_binary(path: Path, ext: str, digest: Digest | None = None) -> Iterator[IO[bytes]]:
    """The file's bytes (decompressed for ``.gz``); with ``digest``, the whole file is hashed too."""
    raw: Any = path.open("rb", buffering=0)
    if digest is not None:
        raw = io.BufferedReader(_HashingReader(raw, digest), _BLOCK)
    reader: Any = gzip.GzipFile(fileobj=raw, mode="rb") if ext.endswith(".gz") else io.BufferedReader(raw)
    with raw, reader:
        yield reader


def jsonl_lines(
    path: Path, ext: str, name: str, digest: Digest | None = None
) -> Iterator[tuple[int, bytes | None, str | None]]:
    """``(line number, line, None)`` for each non-blank line, then ``(n, None, why)`` if the file is cut.

    A compressed stream that breaks off (a truncated download) ends the file with one bad record
    after the lines read so far, so those are kept; a file that is not gzip at all is a file error.
    The one place that knows how a JSON lines file is laid out, shared by reading and counting.
    """
    line_number = 0
    with open_binary(path, ext, digest) as fh:
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


def csv_rows(
    path: Path, name: str, digest: Digest | None = None
) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """``(first line, cells, None)`` for each non-empty row, header included; ``(line, None, why)`` for a
    malformed one.

    The reader is strict, so an unterminated quote is an error (reported on the line that opened it)
    instead of one cell that silently swallows the rest of the file. Shared by reading and counting.
    """
    # surrogateescape turns bad bytes into lone surrogates, so one bad row becomes one bad record
    # instead of an exception that ends the run.
    with (
        open_binary(path, ".csv", digest) as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh,
    ):
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


def csv_table(
    path: Path, name: str, digest: Digest | None = None
) -> tuple[list[str], Iterator[tuple[int, list[str] | None, str | None]]]:
    """The header and the rows after it; a header that cannot be read is a file error."""
    rows = csv_rows(path, name, digest)
    first = next(rows, None)
    if first is None:
        return [], rows
    line_number, header, problem = first
    if header is None:
        raise InputError(f"cannot read the CSV header: {problem}", location=f"{name}:{line_number}")
    return header, rows


def parquet_file(path: Path, name: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", location=name) from exc


def json_type(value: Any) -> str:
    names = {
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def hash_file_into(digest: Digest, path: str | os.PathLike[str]) -> None:
    """Feed a file's bytes into ``digest``, in 1 MiB blocks."""
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    hash_file_into(digest, path)
    return digest.hexdigest()
