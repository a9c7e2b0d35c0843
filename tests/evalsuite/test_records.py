from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from evalsuite.errors import ConfigError, InputError
from evalsuite.records import (
    CANONICAL_FIELDS,
    SUPPORTED_EXTENSIONS,
    RawRecord,
    apply_field_mapping,
    content_key,
    count_records,
    file_sha256,
    iter_chunks,
    parse_field_mapping,
    validate_record,
)

ROWS: list[dict[str, Any]] = [
    {"id": "a", "output": "Paris", "gold": ["Paris", "paris"], "lang": "en"},
    {"id": 7, "output": "Berlin", "gold": "Berlin", "lang": "de"},
    {"output": "Rome", "gold": ["Roma"], "lang": "it"},
]
MAPPING = {"prediction": "output", "references": "gold"}


def _flat(source: Any, **kwargs: Any) -> list[RawRecord]:
    return [raw for chunk in iter_chunks(source, **kwargs) for raw in chunk]


def _write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _jsonl_lines(rows: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(row).encode() for row in rows]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return path


def _validated(raws: list[RawRecord]) -> list[dict[str, Any]]:
    return [validate_record(raw, ["prediction", "references"]) for raw in raws]


EXPECTED = [
    {"id": "a", "lang": "en", "prediction": "Paris", "references": ["Paris", "paris"]},
    {"id": "7", "lang": "de", "prediction": "Berlin", "references": ["Berlin"]},
    {"id": "2", "lang": "it", "prediction": "Rome", "references": ["Roma"]},
]


# ---------------------------------------------------------------------------------------------
# Readers


@pytest.mark.parametrize("name", ["in.jsonl", "in.ndjson", "in.jsonl.gz"])
def test_jsonl_readers(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = b"\n".join(_jsonl_lines(ROWS)) + b"\n"
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    raws = _flat(path, fields=MAPPING)
    assert [raw.location for raw in raws] == [f"{path}:{n}" for n in (1, 2, 3)]
    assert [raw.index for raw in raws] == [0, 1, 2]
    assert _validated(raws) == EXPECTED


def test_jsonl_blank_lines_keep_true_line_numbers(tmp_path: Path) -> None:
    lines = _jsonl_lines(ROWS)
    path = _write_jsonl(tmp_path / "in.jsonl", [b"", lines[0], b"   ", b"", lines[1], lines[2]])
    raws = _flat(path, fields=MAPPING)
    assert [raw.location.rsplit(":", 1)[1] for raw in raws] == ["2", "5", "6"]
    assert [raw.index for raw in raws] == [0, 1, 2]
    assert count_records(path) == 3


def test_parquet_reader(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    frame = pl.DataFrame(
        {
            "id": ["a", "7", None],
            "output": ["Paris", "Berlin", "Rome"],
            "gold": [["Paris", "paris"], ["Berlin"], ["Roma"]],
            "lang": ["en", "de", "it"],
        }
    )
    frame.write_parquet(path, row_group_size=2)
    raws = _flat(path, fields=MAPPING, chunk_size=2)
    assert [raw.location for raw in raws] == [f"{path}:row {n}" for n in (1, 2, 3)]
    assert _validated(raws) == EXPECTED
    assert count_records(path) == 3


def test_parquet_json_list_cells_are_decoded(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pl.DataFrame(
        {"prediction": ["x"], "references": ['["a", "b"]'], "samples": ['["s1","s2"]']}
    ).write_parquet(path)
    [raw] = _flat(path)
    assert raw.data == {"prediction": "x", "references": ["a", "b"], "samples": ["s1", "s2"]}


def test_csv_reader_with_json_list_cells(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "in.csv", ROWS)
    raws = _flat(path, fields=MAPPING)
    assert [raw.location for raw in raws] == [f"{path}:{n}" for n in (2, 3, 4)]
    # The third row has an empty id cell: absent, so the id defaults to the index.
    assert "id" not in (raws[2].data or {})
    assert _validated(raws) == EXPECTED
    assert count_records(path) == 3


def test_csv_multiline_cell_and_text_that_looks_like_a_list(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        'prediction,references\n"line one\nline two","[citation needed] yes"\n\nb,"[1, 2]"\n',
        encoding="utf-8",
    )
    raws = _flat(path)
    assert [raw.location for raw in raws] == [f"{path}:2", f"{path}:5"]
    assert raws[0].data == {"prediction": "line one\nline two", "references": "[citation needed] yes"}
    # A JSON list that is not a list of strings stays text (it is more likely an answer).
    assert raws[1].data == {"prediction": "b", "references": "[1, 2]"}


def test_in_memory_sequence_and_dataframe() -> None:
    raws = _flat(ROWS, fields=MAPPING)
    assert [raw.location for raw in raws] == ["record 0", "record 1", "record 2"]
    assert _validated(raws) == EXPECTED
    frame = pl.DataFrame({"prediction": ["x", "y"], "references": [["a"], ["b", "c"]]})
    raws = _flat(frame)
    assert [raw.data for raw in raws] == [
        {"prediction": "x", "references": ["a"]},
        {"prediction": "y", "references": ["b", "c"]},
    ]
    assert count_records(ROWS) == 3
    assert count_records(frame) == 2
    assert count_records(iter(ROWS)) is None


def test_in_memory_item_that_is_not_a_mapping() -> None:
    raws = _flat([{"prediction": "x"}, ["not", "a", "dict"]])
    assert raws[1].data is None
    assert raws[1].error == "not a mapping (got list)"


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "memory", "frame"])
def test_chunking_and_skip(tmp_path: Path, kind: str) -> None:
    rows = [{"prediction": f"p{i}", "n": i} for i in range(10)]
    source: Any = rows
    if kind == "jsonl":
        source = _write_jsonl(tmp_path / "in.jsonl", _jsonl_lines(rows))
    elif kind == "csv":
        source = _write_csv(tmp_path / "in.csv", rows)
    elif kind == "parquet":
        source = tmp_path / "in.parquet"
        pl.DataFrame(rows).write_parquet(source, row_group_size=3)
    elif kind == "frame":
        source = pl.DataFrame(rows)

    chunks = list(iter_chunks(source, chunk_size=4))
    assert [len(chunk) for chunk in chunks] == [4, 4, 2]
    resumed = list(iter_chunks(source, chunk_size=4, skip=4))
    assert [len(chunk) for chunk in resumed] == [4, 2]
    assert [raw.index for chunk in resumed for raw in chunk] == list(range(4, 10))
    assert [raw for chunk in resumed for raw in chunk] == [raw for chunk in chunks[1:] for raw in chunk]
    assert list(iter_chunks(source, chunk_size=4, skip=10)) == []
    assert list(iter_chunks(source, chunk_size=4, skip=25)) == []


def test_empty_inputs(tmp_path: Path) -> None:
    empty_jsonl = tmp_path / "e.jsonl"
    empty_jsonl.write_bytes(b"\n\n")
    header_only = tmp_path / "e.csv"
    header_only.write_text("prediction\n", encoding="utf-8")
    for source in (empty_jsonl, header_only, []):
        assert list(iter_chunks(source)) == []
        assert count_records(source) == 0


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "answers.txt"
    bad.write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"answers\.txt.*\.jsonl, \.ndjson"):
        list(iter_chunks(bad))
    with pytest.raises(ConfigError, match=r"nope\.jsonl.*does not exist"):
        iter_chunks(tmp_path / "nope.jsonl")  # raised at the call, before iteration
    with pytest.raises(ConfigError):
        count_records(bad)
    assert ".parquet" in SUPPORTED_EXTENSIONS


def test_bad_chunk_size() -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        list(iter_chunks(ROWS, chunk_size=0))


# ---------------------------------------------------------------------------------------------
# Bad input: every kind names the location (and the field where there is one)


def test_bad_jsonl_lines_become_error_records(tmp_path: Path) -> None:
    good = b'{"prediction": "ok", "references": "r"}'
    path = _write_jsonl(
        tmp_path / "in.jsonl",
        [good, b'{"prediction": "x" "references": 1}', b"[1, 2]", b'{"prediction": "caf\xe9"}', good],
    )
    raws = _flat(path)
    assert [raw.error for raw in raws] == [
        None,
        "malformed JSON: Expecting ',' delimiter (col 20)",
        "not a JSON object (got array)",
        "invalid UTF-8 at byte 20",
        None,
    ]
    with pytest.raises(InputError) as excinfo:
        validate_record(raws[1], ["prediction"])
    assert str(excinfo.value) == f"{path}:2: malformed JSON: Expecting ',' delimiter (col 20)"
    assert excinfo.value.location == f"{path}:2"
    assert validate_record(raws[4], ["prediction"])["id"] == "4"


def test_invalid_utf8_in_csv_is_a_record_error(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"prediction,lang\nok,en\nbad \xff,fr\nfine,de\n")
    raws = _flat(path)
    assert [raw.error for raw in raws] == [None, "invalid UTF-8 in column 'prediction'", None]
    assert raws[1].location == f"{path}:3"


def test_csv_row_with_too_many_cells(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("prediction\na,b\n", encoding="utf-8")
    [raw] = _flat(path)
    assert raw.error == "row has 2 cells but the header has 1 columns"


def test_corrupt_gzip_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="not a readable gzip file"):
        list(iter_chunks(path))


def _raw(data: dict[str, Any]) -> RawRecord:
    return RawRecord(index=3, location="answers.jsonl:12", data=data)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"id": 1, "output": "x", "gold": "y"},
            "prediction",
            "missing required field 'prediction' (fields present: id, output, gold; "
            "map one with --field prediction=<name>)",
        ),
        (
            {"prediction": "x", "references": 5},
            "references",
            "must be a string or a list of strings, got int",
        ),
        ({"prediction": "x", "references": []}, "references", "field 'references' is an empty list"),
        ({"prediction": "x", "references": ["a", 2]}, "references", "item 1 must be a string, got int"),
        ({"prediction": "x", "references": ["a", ""]}, "references", "item 1 is an empty string"),
        ({"prediction": "", "references": "y"}, "prediction", "field 'prediction' is an empty string"),
        (
            {"prediction": 3.5, "references": "y"},
            "prediction",
            "field 'prediction' must be a string, got float",
        ),
        ({"prediction": None, "references": "y"}, "prediction", "field 'prediction' is null"),
        (
            {"prediction": "x", "references": "y", "id": True},
            "id",
            "must be a string or an integer, got bool",
        ),
        # Present optional fields are checked too.
        ({"prediction": "x", "references": "y", "source": ""}, "source", "field 'source' is an empty string"),
        (
            {"prediction": "x", "references": "y", "samples": "s"},
            "samples",
            "must be a list of strings, got str",
        ),
        ({"prediction": " \n\t", "references": "y"}, "prediction", "field 'prediction' is only whitespace"),
        ({"prediction": "x", "references": ["a", "  "]}, "references", "item 1 is only whitespace"),
        (
            {"prediction": "x", "references": "y", "samples": ["a", "b"], "sample_logprobs": [-1.0]},
            "sample_logprobs",
            "has 1 values for 2 samples",
        ),
        (
            {"prediction": "x", "references": "y", "sample_logprobs": [-1.0]},
            "sample_logprobs",
            "has 1 values for 0 samples",
        ),
        (
            {"prediction": "x", "references": "y", "samples": ["a"], "sample_logprobs": ["-1"]},
            "sample_logprobs",
            "item 0 must be a number, got str",
        ),
        (
            {"prediction": "x", "references": "y", "samples": ["a"], "sample_logprobs": [0.5]},
            "sample_logprobs",
            "item 0 must be a finite log-probability (<= 0), got 0.5",
        ),
        (
            {"prediction": "x", "references": "y", "samples": ["a"], "sample_logprobs": [float("nan")]},
            "sample_logprobs",
            "must be a finite log-probability",
        ),
        (
            {"prediction": "x", "references": "y", "samples": ["a"], "sample_logprobs": -1.0},
            "sample_logprobs",
            "must be a list of numbers, got float",
        ),
    ],
)
def test_validate_record_errors(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InputError) as excinfo:
        validate_record(_raw(data), ["prediction", "references"])
    error = excinfo.value
    assert error.location == "answers.jsonl:12"
    assert error.field == field
    assert message in error.reason
    assert str(error).startswith("answers.jsonl:12: ")


def test_validate_record_normalises_and_keeps_metadata() -> None:
    data = {
        "prediction": "x",
        "references": ("a", "b"),
        "samples": [],
        "source": None,
        "meta": {"k": [1]},
        "score": None,
    }
    record = validate_record(_raw(data), ["prediction"])
    assert record == {
        "id": "3",
        "prediction": "x",
        "references": ["a", "b"],
        "samples": [],
        "meta": {"k": [1]},
        "score": None,
    }
    # An empty samples list is only a problem for a metric that needs samples.
    with pytest.raises(InputError, match="'samples' is an empty list"):
        validate_record(_raw(data), ["prediction", "samples"])


def test_validate_record_input_is_not_mutated() -> None:
    data = {"id": 5, "prediction": "x", "references": "y"}
    validate_record(_raw(data), ["prediction"])
    assert data == {"id": 5, "prediction": "x", "references": "y"}


# ---------------------------------------------------------------------------------------------
# Field mapping


def test_parse_field_mapping() -> None:
    assert parse_field_mapping(["prediction=output", " references = gold "]) == MAPPING
    assert parse_field_mapping([]) == {}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["prediction"], "CANONICAL=COLUMN"),
        (["=output"], "CANONICAL=COLUMN"),
        (["prediction="], "CANONICAL=COLUMN"),
        (["answer=output"], "unknown field 'answer'; expected one of " + ", ".join(CANONICAL_FIELDS)),
        (["prediction=a", "prediction=b"], "mapped twice"),
    ],
)
def test_parse_field_mapping_errors(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_field_mapping(items)


def test_apply_field_mapping() -> None:
    data = {"output": "x", "gold": "y", "lang": "en"}
    assert apply_field_mapping(data, MAPPING) == {"lang": "en", "prediction": "x", "references": "y"}
    assert apply_field_mapping(data, None) == data
    # The mapped column wins over a stray key that already has the canonical name.
    assert apply_field_mapping({"prediction": "old", "output": "new"}, MAPPING) == {"prediction": "new"}
    # A mapping whose column is absent changes nothing (validation reports the missing field).
    assert apply_field_mapping({"prediction": "p"}, MAPPING) == {"prediction": "p"}


# ---------------------------------------------------------------------------------------------
# Hashing


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    payload = b"x" * (3 << 20) + b"tail"
    path.write_bytes(payload)
    assert file_sha256(path) == hashlib.sha256(payload).hexdigest()


def test_content_key_is_stable_and_sensitive() -> None:
    record = {"prediction": "é", "references": ["a", "b"], "lang": "en"}
    key = content_key(record, ["prediction", "references"])
    assert key == content_key(record, ["references", "prediction"])
    assert key == content_key(
        {"references": ["a", "b"], "prediction": "é", "lang": "fr"}, ["prediction", "references"]
    )
    expected_json = '{"prediction":"é","references":["a","b"]}'
    assert key == hashlib.sha256(expected_json.encode("utf-8")).hexdigest()
    assert key != content_key({**record, "prediction": "e"}, ["prediction", "references"])
    assert key != content_key({**record, "references": ["b", "a"]}, ["prediction", "references"])
    assert key != content_key(record, ["prediction"])
    assert content_key({}, ["source"]) != content_key({"source": ""}, ["source"])


def test_sample_logprobs_round_trip_through_csv(tmp_path: Path) -> None:
    rows = [{"prediction": "x", "samples": ["a", "b"], "sample_logprobs": [-0.5, -2]}]
    [raw] = _flat(_write_csv(tmp_path / "in.csv", rows))
    record = validate_record(raw, ["prediction", "samples"])
    assert record["sample_logprobs"] == [-0.5, -2.0]
    assert all(isinstance(value, float) for value in record["sample_logprobs"])


# --------------------------------------------------------------------------------------------
# Hostile but fair inputs: each one a clear record or file error, the records before a cut kept


def test_a_utf8_bom_does_not_reject_the_first_jsonl_record(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "prediction": "x"}\n{"id": "b", "prediction": "y"}\n')
    records = _flat(path)
    assert [validate_record(raw, ["prediction"])["id"] for raw in records] == ["a", "b"]
    assert count_records(path) == 2


@pytest.mark.parametrize(
    ("lines", "duplicate", "first", "second"),
    [
        ([{"id": "1"}, {"id": 1}], "'1'", "in.jsonl:1", "in.jsonl:2"),  # 1 and "1" are one id
        ([{"id": "x"}, {"id": "y"}, {"id": "x"}], "'x'", "in.jsonl:1", "in.jsonl:3"),
        ([{}, {"id": "0"}], "'0'", "in.jsonl:1", "in.jsonl:2"),  # no id takes its position 0
        ([{"id": "1"}, {}], "'1'", "in.jsonl:1", "in.jsonl:2"),
    ],
)
def test_a_duplicate_id_names_both_records(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lines: list[dict[str, Any]],
    duplicate: str,
    first: str,
    second: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = Path("in.jsonl")
    path.write_text(
        "".join(json.dumps({**line, "prediction": "p"}) + "\n" for line in lines), encoding="utf-8"
    )
    bad = [raw for raw in _flat(path) if raw.error is not None]
    assert len(bad) == 1
    assert bad[0].location == second
    assert bad[0].data is not None  # the record itself is kept for the errors file
    with pytest.raises(
        InputError, match=rf"^{second}: duplicate id {duplicate}.*: {first} has it too"
    ) as caught:
        validate_record(bad[0], ["prediction"])
    assert caught.value.field == "id"


def test_duplicate_ids_are_found_across_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i % 3, "prediction": "p"}) + "\n" for i in range(5)), encoding="utf-8"
    )
    resumed = _flat(path, chunk_size=2, skip=4)
    assert [(raw.index, raw.error is not None) for raw in resumed] == [(4, True)]
    assert "in.jsonl:2 has it too" in str(resumed[0].error)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"id": "1", "prediction": "x \ud800"}, "prediction"),
        ({"id": "\udfff", "prediction": "x"}, "id"),
        ({"id": "1", "prediction": "x", "references": ["ok", "\ud800"]}, "references"),
        ({"id": "1", "prediction": "x", "meta": {"k": ["\ud83d"]}}, "meta"),
        ({"id": "1", "prediction": "x", "m\udc80": 1}, "m\udc80"),
    ],
)
def test_a_lone_surrogate_is_an_input_error_naming_the_field(record: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError, match="not valid Unicode: a lone surrogate") as caught:
        validate_record(RawRecord(0, "in.jsonl:1", record), ["prediction"])
    assert caught.value.field == field
    assert caught.value.location == "in.jsonl:1"
    str(caught.value).encode("utf-8")  # the message itself can be printed and logged


def test_a_truncated_gzip_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    data = b"".join(b'{"id": "%d", "prediction": "record number %d"}\n' % (i, i) for i in range(3000))
    compressed = gzip.compress(data)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    records = _flat(path, chunk_size=500)
    good = [raw for raw in records if raw.error is None]
    assert len(good) > 100
    assert [raw.index for raw in good] == list(range(len(good)))
    assert "the compressed file is cut or damaged here" in str(records[-1].error)
    assert all(raw.error is None for raw in records[:-2])  # at most the torn last line besides the cut
    assert count_records(path) == len(records)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("in.jsonl.gz", b'{"prediction": "plain text, not gzip"}\n', "not a readable gzip file"),
        ("in.parquet", b"PAR1 garbage, not a parquet file", "not a readable Parquet file"),
        ("in.parquet", b"", "not a readable Parquet file"),
    ],
)
def test_an_unreadable_file_is_a_file_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        _flat(path)
    assert caught.value.location == str(path)
    with pytest.raises(InputError, match=message):
        count_records(path)


def test_a_csv_with_an_unterminated_quote_is_not_read_to_the_end_silently(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,prediction\n1,"fine"\n2,"never closed\n3,swallowed\n4,too\n', encoding="utf-8")
    records = _flat(path)
    assert [raw.data for raw in records[:1]] == [{"id": "1", "prediction": "fine"}]
    assert len(records) == 2
    assert records[1].location == f"{path}:3"
    assert "unterminated quoted field: the quote opened on line 3 is never closed" in str(records[1].error)
    assert count_records(path) == 2


def test_a_malformed_csv_row_is_one_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,prediction\n1,"a"b\n2,fine\n', encoding="utf-8")
    records = _flat(path)
    assert [raw.error is None for raw in records] == [False, True]
    assert "malformed CSV row" in str(records[0].error)
    assert count_records(path) == 2


def test_pandas_polars_lazy_and_arrow_frames_are_records() -> None:
    pandas = pytest.importorskip("pandas")
    rows = [
        {"id": "a", "prediction": "x", "references": ["r"]},
        {"id": "b", "prediction": "y", "references": ["s"]},
    ]
    expected = [validate_record(raw, ["prediction"]) for raw in _flat(rows)]
    frame = pl.DataFrame(rows)
    for source in (pandas.DataFrame(rows), frame.lazy(), frame.to_arrow()):
        records = _flat(source, chunk_size=1)
        assert [validate_record(raw, ["prediction"]) for raw in records] == expected, type(source)
        assert count_records(source) in (2, None)  # a LazyFrame has no cheap length


@pytest.mark.parametrize("source", [42, b"bytes", None])
def test_a_source_that_is_not_records_is_a_config_error(source: Any) -> None:
    with pytest.raises(ConfigError, match="expected a file path"):
        _flat(source)
