"""Tables from record rows, where a column may have no one type (written as JSON text, with a warning)."""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from polars.datatypes import DataTypeClass

from evalsuite.records.writers import json_text, to_json_strings

_DataType = pl.DataType | DataTypeClass  # polars gives either, e.g. pl.Int64 or pl.List(pl.Int64)


# Parquet key-value metadata of a part: the metadata columns written as JSON text in it.
JSON_COLUMNS_KEY = "evalsuite:json_columns"


def table_from_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[pl.DataFrame, list[str]]:
    """A table of ``rows``; a column whose values have no one type is written as JSON text.

    Returns the table and those columns. Parquet (and so every chunk) needs one type per column:
    polars would otherwise turn ``{"a": 1}`` beside ``[1]`` into a struct, or ``1`` beside ``"a"``
    into text, without a word. Whole numbers beside fractions are one type (numbers, as JSON says).
    """
    if not rows:
        return pl.DataFrame(), []
    names = list(dict.fromkeys(name for row in rows for name in row))
    mixed = [name for name in names if not _has_one_type(row.get(name) for row in rows)]
    if mixed:
        rows = [{**row, **{name: json_text(row.get(name)) for name in mixed}} for row in rows]
    table = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    return table.select(names), mixed


class _NoOneTypeError(Exception):
    pass


_NONE = type(None)


def _has_one_type(values: Iterable[Any]) -> bool:
    values = list(values)
    # Fast paths for what nearly every column is (texts, scores, lists of texts), checked in C.
    kinds = set(map(type, values)) - {_NONE}
    if len(kinds) <= 1 and kinds <= {str, float, bool}:
        return True
    lists = (value for value in values if value is not None)
    if kinds == {list} and set(map(type, itertools.chain.from_iterable(lists))) <= {str}:
        return True
    shape: Any = None
    try:
        for value in values:
            shape = _merge(shape, _shape(value))
    except _NoOneTypeError:
        return False
    return True


def _shape(value: Any) -> Any:
    """The type of a JSON-like value as polars would store it: ``None`` (unknown), a name, or a
    ``("list", item)`` / ``("struct", {key: shape})`` pair."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise _NoOneTypeError  # beyond 64 bits: only text holds it
        return "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Mapping):
        if not value:
            raise _NoOneTypeError  # Parquet cannot store a struct without fields
        return ("struct", {str(key): _shape(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        item_shape: Any = None
        for item in value:
            item_shape = _merge(item_shape, _shape(item))
        return ("list", item_shape)
    return type(value).__name__  # dates, bytes... as polars reads them from Parquet


def _merge(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0]:
        if a[0] == "list":
            return ("list", _merge(a[1], b[1]))
        fields = dict(a[1])
        for key, shape in b[1].items():
            fields[key] = _merge(fields.get(key), shape)
        return ("struct", fields)
    raise _NoOneTypeError


def unify_parts(parts: list[Path]) -> tuple[list[pl.LazyFrame], list[str]]:
    """The parts as frames that concatenate, and the columns that had to become JSON text.

    A column is JSON text in every part when one part wrote it so, or when two parts hold it as
    types that do not widen into one (only null, whole numbers into floats, and structs into a
    struct with the fields of both do).
    """
    schemas = [pl.read_parquet_schema(part) for part in parts]
    encoded = [set(json.loads(pl.read_parquet_metadata(part).get(JSON_COLUMNS_KEY, "[]"))) for part in parts]
    as_json: set[str] = set().union(*encoded)
    dtypes: dict[str, _DataType] = {}
    for schema in schemas:
        for name, dtype in schema.items():
            if name in as_json:
                continue
            if name not in dtypes:
                dtypes[name] = dtype
                continue
            widened = _widen(dtypes[name], dtype)
            if widened is None:
                as_json.add(name)
            else:
                dtypes[name] = widened
    frames = []
    for part, schema, done in zip(parts, schemas, encoded, strict=True):
        frame = pl.scan_parquet(part)
        todo = [name for name in schema if name in as_json and name not in done]
        if todo:
            frame = frame.with_columns(
                pl.col(name).map_batches(to_json_strings, return_dtype=pl.String, is_elementwise=True)
                for name in todo
            )
        frames.append(frame)
    columns = sorted(as_json)
    warn_json_text(columns)
    return frames, columns


def warn_json_text(columns: Sequence[str]) -> None:
    """Say which columns were stored as JSON text because their values had no one type."""
    if columns:
        warnings.warn(
            f"column(s) {', '.join(map(repr, columns))} hold values of more than one type (e.g. an object "
            "in one record, a list in another): they are written as JSON text",
            UserWarning,
            stacklevel=3,
        )


def _widen(a: _DataType, b: _DataType) -> _DataType | None:
    """The type both ``a`` and ``b`` fit without loss, or ``None``."""
    if a == b:
        return a
    if a == pl.Null:
        return b
    if b == pl.Null:
        return a
    numbers = (pl.Int64, pl.Float64)
    if a in numbers and b in numbers:
        return pl.Float64()
    if isinstance(a, pl.List) and isinstance(b, pl.List):
        inner = _widen(a.inner, b.inner)
        return None if inner is None else pl.List(inner)
    if isinstance(a, pl.Struct) and isinstance(b, pl.Struct):
        fields: dict[str, _DataType] = {field.name: field.dtype for field in a.fields}
        for field in b.fields:
            if field.name in fields:
                widened = _widen(fields[field.name], field.dtype)
                if widened is None:
                    return None
                fields[field.name] = widened
            else:
                fields[field.name] = field.dtype
        return pl.Struct(fields)
    return None
