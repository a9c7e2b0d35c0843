"""Record validation: a raw record becomes a canonical one or an error naming its record and field."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from evalsuite.errors import InputError
from evalsuite.records.schema import CANONICAL_FIELDS, TEXT_FIELDS, RawRecord


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _field_error(name, f"field '{name}' must be a string, got {type(value).__name__}")
    if not value:
        raise _field_error(name, f"field '{name}' is an empty string")
    if value.isspace():
        raise _field_error(name, f"field '{name}' is only whitespace")
    _check_unicode(name, value, f"field '{name}'")
    return value


def _check_unicode(name: str, text: str, what: str) -> None:
    """Refuse a lone surrogate (``"\\ud800"`` in JSON): it is not Unicode text and no file can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _field_error(
            name,
            f"{what} is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} "
            f"at character {exc.start + 1}",
        ) from None


def _check_metadata_unicode(name: str, value: Any) -> None:
    # Metadata is written out as it is, so it must be encodable too (keys of nested objects included).
    if isinstance(value, str):
        _check_unicode(name, value, f"field {name!a}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check_unicode(name, key, f"a key inside field {name!a}")
            _check_metadata_unicode(name, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_metadata_unicode(name, item)


def _check_string_list(name: str, value: list[Any], *, allow_empty: bool) -> list[str]:
    if not value and not allow_empty:
        raise _field_error(name, f"field '{name}' is an empty list")
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise _field_error(
                name, f"field '{name}' item {position} must be a string, got {type(item).__name__}"
            )
        if not item:
            raise _field_error(name, f"field '{name}' item {position} is an empty string")
        if item.isspace():
            raise _field_error(name, f"field '{name}' item {position} is only whitespace")
        _check_unicode(name, item, f"field '{name}' item {position}")
    return list(value)


def _check_logprobs(value: Any) -> list[float]:
    if not isinstance(value, list | tuple):
        raise _field_error(
            "sample_logprobs",
            f"field 'sample_logprobs' must be a list of numbers, got {type(value).__name__}",
        )
    for position, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise _field_error(
                "sample_logprobs",
                f"field 'sample_logprobs' item {position} must be a number, got {type(item).__name__}",
            )
        if not math.isfinite(item) or item > 0:
            raise _field_error(
                "sample_logprobs",
                f"field 'sample_logprobs' item {position} must be a finite log-probability (<= 0), got {item}",
            )
    return [float(item) for item in value]


def _field_error(name: str, message: str) -> InputError:
    # The location is filled in by validate_record, which knows it.
    return InputError(message, field=name)


def normalise_field(name: str, value: Any, *, required: bool) -> Any:
    if name == "id":
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _field_error(name, f"field 'id' must be a string or an integer, got {type(value).__name__}")
        return _check_text(name, str(value))
    if name in TEXT_FIELDS:
        return _check_text(name, value)
    if name == "references":
        if isinstance(value, str):
            return [_check_text(name, value)]
        if isinstance(value, list | tuple):
            return _check_string_list(name, list(value), allow_empty=False)
        raise _field_error(
            name, f"field 'references' must be a string or a list of strings, got {type(value).__name__}"
        )
    if name == "sample_logprobs":
        return _check_logprobs(value)
    # samples: an empty list is harmless until a metric needs samples.
    if isinstance(value, list | tuple):
        return _check_string_list(name, list(value), allow_empty=not required)
    raise _field_error(name, f"field 'samples' must be a list of strings, got {type(value).__name__}")


def validate_record(raw: RawRecord, required: Iterable[str]) -> dict[str, Any]:
    """Check and normalise one record, or raise :class:`InputError` naming its location and field.

    Every canonical field present is checked, required or not; ``references`` becomes a list of
    strings, ``id`` a string (the record's index when absent). A canonical field set to null counts
    as absent. Metadata keys are returned unchanged.

    >>> validate_record(RawRecord(0, "record 0", {"prediction": "a", "references": "b"}), ["prediction"])
    {'id': '0', 'prediction': 'a', 'references': ['b']}
    """
    if raw.data is None or raw.error is not None:
        raise InputError(raw.error or "record could not be read", location=raw.location, field=raw.field)
    data = raw.data
    required = tuple(required)
    for name in required:
        if name == "id":
            continue  # always defaults to the index
        if name not in data:
            present = ", ".join(data) or "none"
            raise InputError(
                f"missing required field '{name}' "
                f"(fields present: {present}; map one with --field {name}=<name>)",
                location=raw.location,
                field=name,
            )
        if data[name] is None:
            raise InputError(f"field '{name}' is null", location=raw.location, field=name)
    record: dict[str, Any] = {"id": str(raw.index)}
    for key, value in data.items():
        try:
            if key not in CANONICAL_FIELDS:
                _check_unicode(key, key, f"field name {key!a}")
                _check_metadata_unicode(key, value)
                record[key] = value
            elif value is not None:
                record[key] = normalise_field(key, value, required=key in required)
        except InputError as exc:
            raise InputError(exc.reason, location=raw.location, field=key) from None
    logprobs, samples = record.get("sample_logprobs"), record.get("samples")
    if logprobs is not None and len(logprobs) != len(samples or []):
        raise InputError(
            f"field 'sample_logprobs' has {len(logprobs)} values for {len(samples or [])} samples; "
            "give one log-probability per sample",
            location=raw.location,
            field="sample_logprobs",
        )
    return record


def error_entry(raw: RawRecord, error: InputError) -> dict[str, Any]:
    """The row written to the errors file for a record that failed validation."""
    return {
        "index": raw.index,
        "location": raw.location,
        "field": error.field,
        "reason": error.reason,
        "record": raw.data,
    }


def read_error_rows(path: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """The error rows of a run's errors file (``OUT.errors.jsonl``); none for no file."""
    if path is None or not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def content_key(record: Mapping[str, Any], fields: Sequence[str]) -> str:
    """Cache key of ``record`` for a metric that reads ``fields``: equal inputs give equal keys.

    >>> key = content_key({"prediction": "a", "lang": "en"}, ["prediction"])
    >>> key == content_key({"prediction": "a"}, ["prediction"])
    True
    """
    payload = {name: record.get(name) for name in sorted(set(fields))}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
