"""The record schema: canonical fields, the raw record as read, and field mapping."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import polars as pl

from evalsuite.errors import ConfigError

CANONICAL_FIELDS = ("id", "prompt", "source", "prediction", "references", "samples", "sample_logprobs")


TEXT_FIELDS = ("prompt", "source", "prediction")


# Fields whose value is a list; in CSV (and often Parquet written from CSV) a list arrives as JSON text.
LIST_FIELDS = ("references", "samples", "sample_logprobs")


# pandas DataFrames and pyarrow Tables are accepted too (converted through polars), typed as Any
# so neither library has to be installed.
Source: TypeAlias = str | os.PathLike[str] | pl.DataFrame | pl.LazyFrame | Iterable[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record as read, before validation.

    ``index`` is the 0-based position over the whole input; ``location`` is what a person needs to
    find it: ``"answers.jsonl:12"`` (1-based line), ``"data.parquet:row 5"`` (1-based row) or
    ``"record 3"`` (0-based, for in-memory input). ``data`` is the record after field mapping, or
    ``None`` when it could not be parsed. ``error`` says why a record cannot be scored (unparseable,
    or a duplicate id); ``field`` names the field at fault, when one is.
    """

    index: int
    location: str
    data: dict[str, Any] | None
    error: str | None = None
    field: str | None = None


def parse_field_mapping(items: Iterable[str]) -> dict[str, str]:
    """Parse CLI ``--field`` options into ``{canonical: source_column}``.

    >>> parse_field_mapping(["prediction=output", "references=gold"])
    {'prediction': 'output', 'references': 'gold'}
    """
    mapping: dict[str, str] = {}
    for item in items:
        canonical, sep, column = (part.strip() for part in item.partition("="))
        if not sep or not canonical or not column:
            raise ConfigError(f"--field expects CANONICAL=COLUMN (e.g. prediction=output), got {item!r}")
        if canonical not in CANONICAL_FIELDS:
            raise ConfigError(
                f"--field {item!r}: unknown field {canonical!r}; "
                f"expected one of {', '.join(CANONICAL_FIELDS)}"
            )
        if canonical in mapping and mapping[canonical] != column:
            raise ConfigError(f"--field {canonical} is mapped twice ({mapping[canonical]!r} and {column!r})")
        mapping[canonical] = column
    return mapping


def apply_field_mapping(data: Mapping[str, Any], fields: Mapping[str, str] | None) -> dict[str, Any]:
    """Rename source columns to canonical names; the source column is not kept under its old name.

    A mapped column wins over a key that already had the canonical name.

    >>> apply_field_mapping({"output": "Paris", "lang": "en"}, {"prediction": "output"})
    {'lang': 'en', 'prediction': 'Paris'}
    """
    if not fields:
        return dict(data)
    sources = set(fields.values())
    targets = {canonical for canonical, column in fields.items() if column in data}
    out = {k: v for k, v in data.items() if k not in sources and k not in targets}
    for canonical, column in fields.items():
        if column in data:
            out[canonical] = data[column]
    return out


def decode_list_cells(data: dict[str, Any]) -> dict[str, Any]:
    """Decode ``'["a", "b"]'`` cells of list fields, as tabular files cannot hold lists natively."""
    for name in LIST_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                decoded = json.loads(value)
            except ValueError:
                continue  # a reference may simply start with "[": keep the text
            # "[1, 2]" is more likely an answer than a list of references: only take lists of strings
            # (of numbers for log-probabilities).
            item_type = (int, float) if name == "sample_logprobs" else str
            if isinstance(decoded, list) and all(isinstance(item, item_type) for item in decoded):
                data[name] = decoded
    return data
