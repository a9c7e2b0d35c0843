"""Judge labels: read them, join them to records by id, and check they fit the label kind.

Nothing is dropped silently: records without a label, labels without a record and draws left out of
training are counted in a :class:`LabelReport`, with examples.

Example:
    >>> aligned = align_labels(["a", "b"], {"a": 1, "b": 2, "c": 1})
    >>> aligned.values, aligned.report.extra_labels
    ([1, 2], 1)
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from evalsuite.errors import ConfigError, InputError

__all__ = [
    "KINDS",
    "AlignedLabels",
    "EncodedLabels",
    "JudgeKind",
    "LabelReport",
    "align_labels",
    "encode_labels",
    "read_labels",
]

JudgeKind = Literal["binary", "pairwise", "ordinal", "continuous"]
KINDS: tuple[str, ...] = ("binary", "pairwise", "ordinal", "continuous")
_SHOWN = 5  # examples named in a message


@dataclass
class LabelReport:
    """What happened to each record on the way from results + labels to training rows."""

    records: int = 0
    labelled: int = 0
    missing_labels: int = 0
    missing_examples: list[str] = field(default_factory=list)
    extra_labels: int = 0
    extra_examples: list[str] = field(default_factory=list)
    draws: int = 0
    used: int = 0

    def lines(self) -> list[str]:
        lines = [f"{self.records} records, {self.labelled} with a label, {self.used} used for training"]
        if self.missing_labels:
            lines.append(
                f"{self.missing_labels} records have no label and were left out "
                f"(e.g. {', '.join(map(repr, self.missing_examples))})"
            )
        if self.extra_labels:
            lines.append(
                f"{self.extra_labels} labels name no record of the results and were ignored "
                f"(e.g. {', '.join(map(repr, self.extra_examples))})"
            )
        if self.draws:
            lines.append(f"{self.draws} draws were left out of training")
        return lines


@dataclass
class AlignedLabels:
    """Labels in the records' order; ``present[i]`` is False where record ``i`` has no label."""

    values: list[Any]
    present: np.ndarray
    report: LabelReport


@dataclass
class EncodedLabels:
    """Training targets: class indices into ``classes`` (classifiers) or floats (continuous)."""

    target: np.ndarray
    classes: list[Any]
    keep: np.ndarray  # which aligned labels are used (draws are not)
    draws: int


def read_labels(path: str | os.PathLike[str], *, label_field: str, id_field: str = "id") -> dict[str, Any]:
    """``{id: label}`` from a .jsonl, .json (an array of objects), .csv or .parquet file.

    A duplicated id or a record without the id or label field raises :class:`InputError` naming it.

    Example:
        >>> read_labels("judge.jsonl", label_field="preference")  # doctest: +SKIP
        {'q1': 2, 'q2': 1}
    """
    source = pathlib.Path(path)
    if not source.is_file():
        raise ConfigError(f"label file {str(source)!r} does not exist")
    rows = _label_rows(source)
    labels: dict[str, Any] = {}
    for number, row in rows:
        where = f"{source.name}:{number}"
        if not isinstance(row, Mapping):
            raise InputError(f"a label record must be an object, got {type(row).__name__}", location=where)
        if row.get(id_field) is None:
            raise InputError(f"the label record has no {id_field!r}", location=where, field=id_field)
        if label_field not in row:
            raise InputError(
                f"the label record has no field {label_field!r}; it has {sorted(row)}",
                location=where,
                field=label_field,
            )
        record_id = str(row[id_field])
        if record_id in labels:
            raise InputError(f"id {record_id!r} is labelled twice", location=where, field=id_field)
        labels[record_id] = row[label_field]
    return labels


def align_labels(
    ids: Sequence[str],
    labels: Mapping[str, Any],
    *,
    missing: Literal["error", "skip"] = "error",
) -> AlignedLabels:
    """Labels for ``ids`` in order. A record without a label (or with a null one) raises
    :class:`InputError` naming it, unless ``missing="skip"`` (then it is counted and left out)."""
    if missing not in ("error", "skip"):
        raise ConfigError(f"missing must be 'error' or 'skip', got {missing!r}")
    values: list[Any] = []
    present = np.zeros(len(ids), dtype=bool)
    absent: list[str] = []
    for i, record_id in enumerate(ids):
        value = labels.get(record_id)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            absent.append(record_id)
            values.append(None)
        else:
            present[i] = True
            values.append(value)
    known = set(ids)
    extra = [record_id for record_id in labels if record_id not in known]
    if absent and missing == "error":
        raise InputError(
            f"{len(absent)} of {len(ids)} records have no label (e.g. id {', '.join(map(repr, absent[:_SHOWN]))}); "
            f"{len(extra)} labels name ids that are not in the results"
            + (f" (e.g. {', '.join(map(repr, extra[:_SHOWN]))})" if extra else "")
            + "; fix the ids, or skip unlabelled records (--skip-missing-labels / missing='skip')",
            field="id",
        )
    report = LabelReport(
        records=len(ids),
        labelled=int(present.sum()),
        missing_labels=len(absent),
        missing_examples=absent[:_SHOWN],
        extra_labels=len(extra),
        extra_examples=extra[:_SHOWN],
        used=int(present.sum()),
    )
    return AlignedLabels(values, present, report)


def encode_labels(
    values: Sequence[Any],
    ids: Sequence[str],
    kind: str,
    *,
    draw_label: Any = None,
) -> EncodedLabels:
    """Check labels against ``kind`` and turn them into targets.

    - ``binary``: exactly two distinct values (classes in sorted order);
    - ``pairwise``: two or three values (which output won, and maybe a draw); records whose label
      equals ``draw_label`` are left out of training and counted;
    - ``ordinal``: numbers with at least three levels, classes in numeric order;
    - ``continuous``: numbers.

    A value that does not fit raises :class:`InputError` naming the record and the value.

    Example:
        >>> encoded = encode_labels([1, 2, 0, 2], ["a", "b", "c", "d"], "pairwise", draw_label=0)
        >>> encoded.classes, encoded.target.tolist(), encoded.draws
        ([1, 2], [0, 1, 1], 1)
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if draw_label is not None and kind != "pairwise":
        raise ConfigError(f"draw_label is for pairwise labels, got it with kind {kind!r}")
    values = [value.item() if isinstance(value, np.generic) else value for value in values]
    if kind in ("ordinal", "continuous"):
        for record_id, value in zip(ids, values, strict=True):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(
                    f"{kind} labels must be finite numbers, got {value!r} ({type(value).__name__})",
                    location=f"id {record_id!r}",
                    field="label",
                )
    else:
        _check_hashable(values, ids)
    keep = np.ones(len(values), dtype=bool)
    if draw_label is not None:
        keep = np.array([value != draw_label for value in values], dtype=bool)
    kept = [value for value, used in zip(values, keep, strict=True) if used]
    draws = int((~keep).sum())
    if kind == "continuous":
        return EncodedLabels(np.asarray(kept, dtype=np.float64), [], keep, draws)
    counts = Counter(kept)
    classes = _sorted_classes(list(counts))
    expected = {"binary": (2, 2), "pairwise": (2, 3), "ordinal": (3, None)}[kind]
    low, high = expected
    if len(classes) < low or (high is not None and len(classes) > high):
        wanted = f"exactly {low}" if low == high else f"{low} to {high}" if high else f"at least {low}"
        shown = ", ".join(
            f"{value!r} ({count}x)" for value, count in sorted(counts.items(), key=lambda item: str(item[0]))
        )
        hint = " (pass draw_label to leave draws out)" if kind == "pairwise" and len(classes) > 3 else ""
        raise InputError(
            f"{kind} labels need {wanted} distinct values, got {len(classes)}: {shown}{hint}", field="label"
        )
    position = {value: i for i, value in enumerate(classes)}
    target = np.array([position[value] for value in kept], dtype=np.int64)
    return EncodedLabels(target, classes, keep, draws)


def _label_rows(source: pathlib.Path) -> list[tuple[int, Any]]:
    name = source.name.lower()
    try:
        if name.endswith((".jsonl", ".ndjson")):
            rows: list[tuple[int, Any]] = []
            with source.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        rows.append((number, json.loads(line)))
            return rows
        if name.endswith(".json"):
            data = json.loads(source.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise InputError(
                    f"a .json label file must hold an array of objects, got {type(data).__name__}",
                    location=source.name,
                )
            return list(enumerate(data, start=1))
        if name.endswith(".csv"):
            return list(enumerate(pl.read_csv(source, infer_schema_length=None).to_dicts(), start=2))
        if name.endswith(".parquet"):
            return list(enumerate(pl.read_parquet(source).to_dicts(), start=1))
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON: {error}", location=source.name) from error
    raise ConfigError(f"label file must end in .jsonl, .json, .csv or .parquet, got {source.name!r}")


def _check_hashable(values: Sequence[Any], ids: Sequence[str]) -> None:
    for record_id, value in zip(ids, values, strict=True):
        if not isinstance(value, str | int | float | bool):
            raise InputError(
                f"a label must be a string, number or boolean, got {type(value).__name__}",
                location=f"id {record_id!r}",
                field="label",
            )


def _sorted_classes(values: list[Any]) -> list[Any]:
    if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        return sorted(values)
    if all(isinstance(value, bool) for value in values):
        return sorted(values)
    if all(isinstance(value, str) for value in values):
        return sorted(values)
    raise InputError(
        f"labels mix types ({', '.join(sorted({type(value).__name__ for value in values}))}); "
        "use one type for every label",
        field="label",
    )
