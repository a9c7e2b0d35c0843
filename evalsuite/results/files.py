"""Reading result files: the table in any of the three formats (CSV's JSON text decoded), the errors file.

Writing goes through :func:`evalsuite.records.write_table_atomically`, the one format dispatch.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import polars as pl

from evalsuite.errors import ConfigError
from evalsuite.manifest import RunManifest
from evalsuite.records import read_error_rows

__all__ = ["RESULT_FORMATS", "format_of", "read_errors_file", "read_table", "require_suffix"]

RESULT_FORMATS = (".parquet", ".jsonl", ".csv")
# Record fields that hold lists or mappings; used to decode a CSV written without a manifest.
_NESTED_RECORD_FIELDS = ("references", "samples", "metadata")


def format_of(path: pathlib.Path) -> str:
    """The result format of ``path`` from its extension; :class:`ConfigError` for another one."""
    suffix = path.suffix.lower()
    if suffix not in RESULT_FORMATS:
        raise ConfigError(f"result file must end in one of {', '.join(RESULT_FORMATS)}, got {path.name!r}")
    return suffix


def require_suffix(path: str | os.PathLike[str], suffix: str) -> pathlib.Path:
    """``path`` as a Path when it ends in ``suffix``."""
    target = pathlib.Path(path)
    if target.suffix.lower() != suffix:
        raise ConfigError(f"expected a path ending in {suffix}, got {target.name!r}")
    return target


def read_table(source: pathlib.Path, manifest: RunManifest) -> pl.DataFrame:
    """The whole table of a result file; CSV columns written as JSON text are decoded back.

    The manifest's ``csv_json_columns`` says which CSV columns were encoded; without it (a CSV from the
    CLI or elsewhere), the record fields that hold lists or mappings are decoded where every cell is
    JSON of that shape.
    """
    suffix = format_of(source)
    if suffix == ".parquet":
        return pl.read_parquet(source)
    if suffix == ".jsonl":
        return pl.read_ndjson(source)
    table = pl.read_csv(source)
    encoded = manifest.csv_json_columns
    if encoded is not None:
        return table.with_columns(_json_decoded(table[name]) for name in encoded if name in table.columns)
    for name in _NESTED_RECORD_FIELDS:
        if table.schema.get(name) == pl.String():
            decoded = _json_decoded_if_nested(table[name])
            if decoded is not None:
                table = table.with_columns(decoded)
    return table


def read_errors_file(source: pathlib.Path) -> list[dict[str, Any]]:
    """The records that failed, from ``<name>.errors.jsonl`` beside the output (the CLI's); none without it."""
    return read_error_rows(source.with_suffix(".errors.jsonl"))


def _json_decoded(series: pl.Series) -> pl.Series:
    values = [None if value is None else json.loads(value) for value in series.cast(pl.String).to_list()]
    return pl.Series(series.name, values, strict=False)


def _json_decoded_if_nested(series: pl.Series) -> pl.Series | None:
    values: list[Any] = []
    for text in series.to_list():
        if text is None:
            values.append(None)
            continue
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if not isinstance(value, list | dict):
            return None
        values.append(value)
    return pl.Series(series.name, values, strict=False)
