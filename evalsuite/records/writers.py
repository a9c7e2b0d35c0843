"""Writers: the one format dispatch (.parquet, .jsonl, .csv) and atomic, durable commits.

Every table evalsuite writes (run outputs, ``Results.write``, proxy predictions, dashboard exports)
goes through :func:`write_table`, so a format is written one way everywhere: CSV cannot hold lists or
structs, so they become JSON text there (the readers decode them back).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import polars as pl

from evalsuite.errors import ConfigError

OUTPUT_FORMATS = (".jsonl", ".parquet", ".csv")


TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
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
    fsync_dir(final.parent)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_bytes(data)
    commit_file(tmp, path)


def json_line(row: Mapping[str, Any]) -> bytes:
    """One JSON line, readable text where it can be; a lone surrogate (not encodable) is escaped."""
    text = json.dumps(row, ensure_ascii=False, default=str)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(row, ensure_ascii=True, default=str) + "\n").encode("ascii")


def json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def json_encode_nested(schema: pl.Schema) -> list[pl.Expr]:
    """CSV cannot hold lists or structs: write them as JSON text (which the readers decode back)."""
    return [
        pl.col(name).map_batches(to_json_strings, return_dtype=pl.String, is_elementwise=True)
        for name, dtype in schema.items()
        if dtype.is_nested()
    ]


def to_json_strings(series: pl.Series) -> pl.Series:
    values = [json_text(value) for value in series.to_list()]
    return pl.Series(series.name, values, dtype=pl.String)


def output_format(path: str | os.PathLike[str]) -> str:
    """The format of an output path, from its extension (``.parquet``, ``.jsonl`` or ``.csv``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(
            f"cannot write {os.fspath(path)!r}: unsupported output type; expected one of {', '.join(OUTPUT_FORMATS)}"
        )
    return suffix


def write_table(
    table: pl.DataFrame | pl.LazyFrame, target: str | os.PathLike[str] | IO[bytes], *, fmt: str | None = None
) -> list[str]:
    """Write ``table`` to a path or binary stream in ``fmt`` (default: from the path's extension).

    A LazyFrame streams to a path without being collected. Returns the nested columns written as
    JSON text (CSV only), which a manifest records so readers can decode them.
    """
    if fmt is None:
        if not isinstance(target, str | os.PathLike):
            raise ConfigError("writing to a stream needs fmt ('.parquet', '.jsonl' or '.csv')")
        fmt = output_format(target)
    elif fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"fmt must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    lazy = table.lazy()
    schema = lazy.collect_schema()
    nested = [name for name, dtype in schema.items() if dtype.is_nested()] if fmt == ".csv" else []
    if nested:
        lazy = lazy.with_columns(json_encode_nested(schema))
    if isinstance(target, str | os.PathLike):
        sinks: dict[str, Callable[[Any], object]] = {
            ".parquet": lazy.sink_parquet,
            ".jsonl": lazy.sink_ndjson,
            ".csv": lazy.sink_csv,
        }
        sinks[fmt](target)
    else:
        frame = lazy.collect()
        writers: dict[str, Callable[[Any], object]] = {
            ".parquet": frame.write_parquet,
            ".jsonl": frame.write_ndjson,
            ".csv": frame.write_csv,
        }
        writers[fmt](target)
    return nested


def write_table_atomically(table: pl.DataFrame | pl.LazyFrame, path: str | os.PathLike[str]) -> list[str]:
    """:func:`write_table` to ``path`` through a temporary file: a reader never sees half a file."""
    fmt = output_format(path)
    with atomic_target(Path(path)) as tmp:
        return write_table(table, tmp, fmt=fmt)


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; committed to ``path`` (fsynced, renamed) when the
    block succeeds and removed when it fails, so a reader (the dashboard, a resumed run, a
    concurrent process) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
