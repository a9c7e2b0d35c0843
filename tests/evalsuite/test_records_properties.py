"""Property-based tests of the readers: arbitrary bytes and JSON never crash a run, and every input
record ends as exactly one scored row or one error row.

A file that cannot be read at all (not gzip, not Parquet) is the one allowed failure: an
:class:`InputError` naming the file, before anything is written.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalsuite.api import Scorer
from evalsuite.errors import InputError
from evalsuite.records import CANONICAL_FIELDS, count_records, iter_chunks, validate_record

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from([*CANONICAL_FIELDS, "meta", "pii_email", "lang"]) | st.text(max_size=6)
json_records = st.dictionaries(field_names, json_values | st.text(max_size=30), max_size=5)


def _accounted(source: Any, **kwargs: Any) -> tuple[int, int]:
    """(records read, records that validated or failed with an InputError): equal when none is lost."""
    read = handled = 0
    for chunk in iter_chunks(source, chunk_size=3, **kwargs):
        for raw in chunk:
            read += 1
            with contextlib.suppress(InputError):
                validate_record(raw, ["prediction"])
            handled += 1
    return read, handled


@FUZZ
@given(content=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".jsonl.gz", ".csv", ".parquet"]))
def test_arbitrary_bytes_are_records_or_a_file_error(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"in{suffix}"
        path.write_bytes(content)
        try:
            expected = count_records(path)
        except InputError:
            with pytest.raises(InputError, match=f"^{path}"):
                _accounted(path)
            return
        read, handled = _accounted(path)
        assert read == handled == expected


@FUZZ
@given(content=st.binary(max_size=300))
def test_arbitrary_bytes_inside_a_valid_gzip_are_records(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.jsonl.gz"
        path.write_bytes(gzip.compress(content))
        read, handled = _accounted(path)
        assert (
            read == handled == count_records(path) == sum(1 for line in io.BytesIO(content) if line.strip())
        )


@FUZZ
@given(rows=st.lists(json_records, max_size=8), cut=st.integers(min_value=0, max_value=10_000))
def test_json_lines_and_a_truncated_gzip_of_them(rows: list[dict[str, Any]], cut: int) -> None:
    data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    compressed = gzip.compress(data)
    with tempfile.TemporaryDirectory() as folder:
        plain, cut_gz = Path(folder) / "in.jsonl", Path(folder) / "cut.jsonl.gz"
        plain.write_bytes(data)
        cut_gz.write_bytes(compressed[: max(cut % (len(compressed) + 1), 20)])
        assert _accounted(plain) == (len(rows), len(rows))
        try:
            read, handled = _accounted(cut_gz)
        except InputError:
            return  # cut inside the gzip header: not a gzip file at all
        assert read == handled == count_records(cut_gz)


@FUZZ
@pytest.mark.filterwarnings("ignore:column.*more than one type:UserWarning")  # expected of random metadata
@given(rows=st.lists(json_records, min_size=1, max_size=8), chunk_size=st.integers(1, 4))
def test_every_record_ends_as_one_row_or_one_error(rows: list[dict[str, Any]], chunk_size: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.jsonl"
        source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        with Scorer(["pii"], cache=False, chunk_size=chunk_size) as scorer:
            run = scorer.score_file(source, Path(folder) / "out.jsonl", on_error="skip")
        written = pl.read_ndjson(run.output)["id"].to_list() if run.records else []
        # Lines end at "\n" only (str.splitlines would also split inside a text holding U+0085).
        lines = run.errors_file.read_text(encoding="utf-8").split("\n") if run.errors_file else []
        errors = [json.loads(line)["index"] for line in lines if line]
        assert len(written) + len(errors) == len(rows) == run.records + run.errors
        assert len(set(written)) == len(written)  # ids stay unique: duplicates are errors
        assert len(set(errors)) == len(errors)
        assert set(errors) <= set(range(len(rows)))
