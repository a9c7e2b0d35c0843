from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from evalsuite.checkpoint import ChunkedWriter
from evalsuite.errors import ConfigError, ResumeError
from evalsuite.records import iter_chunks

FINGERPRINT = {"input_sha256": "abc", "metrics": {"bertscore": "h1"}, "fields": {"prediction": "output"}}


def _chunk(start: int, stop: int) -> pl.DataFrame:
    ids = range(start, stop)
    return pl.DataFrame(
        {
            "id": [str(i) for i in ids],
            "score": [i / 10 for i in ids],
            "references": [[f"r{i}", "x"] for i in ids],
        }
    )


def _error(index: int) -> dict[str, Any]:
    return {
        "index": index,
        "location": f"in.jsonl:{index + 1}",
        "field": "prediction",
        "reason": "x",
        "record": None,
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _read_out(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pl.read_parquet(path).to_dicts()
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("ext", [".jsonl", ".parquet", ".csv"])
def test_write_and_finalize(tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"run{ext}"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    assert writer.completed_chunks == 0
    writer.write_chunk(0, _chunk(0, 2), [])
    writer.write_chunk(1, _chunk(3, 4), [_error(2)])
    # A chunk whose records were all bad, and one with a column the others lack.
    writer.write_chunk(2, pl.DataFrame(), [_error(4), _error(5)])
    writer.write_chunk(3, _chunk(6, 7).with_columns(extra=pl.lit("e"), score=pl.lit(None)), [])
    assert writer.records_done == 8

    out_path, errors_path = writer.finalize()
    assert out_path == out
    assert errors_path == tmp_path / "run.errors.jsonl"
    assert not (tmp_path / f"run{ext}.partial").exists()

    rows = _read_out(out)
    assert [row["id"] for row in rows] == ["0", "1", "3", "6"]
    assert [row["extra"] for row in rows][-1] == "e"
    if ext == ".csv":
        # CSV cannot hold lists: they are JSON text, which the readers decode back.
        assert rows[0]["references"] == '["r0", "x"]'
        assert rows[0]["extra"] == ""
        reread = [raw.data for chunk in iter_chunks(out) for raw in chunk]
        assert reread[0] is not None
        assert reread[0]["references"] == ["r0", "x"]
        assert "extra" not in reread[0]
    else:
        assert rows[0]["references"] == ["r0", "x"]
        assert rows[0]["extra"] is None
        assert rows[-1]["score"] is None
        assert rows[2]["score"] == pytest.approx(0.3)
    assert [e["index"] for e in _read_jsonl(errors_path)] == [2, 4, 5]


@pytest.mark.parametrize("ext", [".jsonl", ".parquet", ".csv"])
def test_finalize_with_zero_chunks(tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"run{ext}"
    stale_errors = tmp_path / "run.errors.jsonl"
    stale_errors.write_text("{}\n", encoding="utf-8")
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=10)
    assert writer.finalize() == (out, None)
    assert not stale_errors.exists()
    if ext == ".parquet":
        assert pl.read_parquet(out).shape == (0, 0)
    else:
        assert out.read_bytes() == b""


def test_no_errors_gives_none_and_removes_a_stale_errors_file(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    (tmp_path / "run.errors.jsonl").write_text('{"old": 1}\n', encoding="utf-8")
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [])
    assert writer.finalize() == (out, None)
    assert not (tmp_path / "run.errors.jsonl").exists()


def test_resume_after_crash_gives_each_record_exactly_once(tmp_path: Path) -> None:
    records = [{"id": str(i), "prediction": f"p{i}"} for i in range(5)]
    out = tmp_path / "run.jsonl"
    staging = tmp_path / "run.jsonl.partial"

    def scored(chunk: list[Any]) -> pl.DataFrame:
        return pl.DataFrame(
            {"id": [raw.data["id"] for raw in chunk], "len": [len(raw.data["prediction"]) for raw in chunk]}
        )

    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    first = next(iter_chunks(records, chunk_size=2))
    writer.write_chunk(0, scored(first), [_error(1)])
    # Simulate kill -9 in the middle of chunk 1: its errors file was renamed, its part was not.
    (staging / "errors-000001.jsonl").write_text(json.dumps(_error(3)) + "\n", encoding="utf-8")
    (staging / "part-000001.parquet.tmp").write_bytes(b"half a parquet file")
    del writer

    resumed = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    assert resumed.completed_chunks == 1
    assert resumed.records_done == 2
    assert sorted(p.name for p in staging.iterdir()) == [
        "errors-000000.jsonl",
        "job.json",
        "part-000000.parquet",
    ]
    chunks = iter_chunks(records, chunk_size=2, skip=resumed.records_done)
    for index, chunk in enumerate(chunks, start=resumed.completed_chunks):
        resumed.write_chunk(index, scored(chunk), [])
    _, errors_path = resumed.finalize()

    assert [row["id"] for row in _read_jsonl(out)] == ["0", "1", "2", "3", "4"]
    assert errors_path is not None
    assert [e["index"] for e in _read_jsonl(errors_path)] == [1]


def test_a_gap_in_parts_ends_the_committed_prefix(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=1)
    writer.write_chunk(0, _chunk(0, 1), [])
    staging = tmp_path / "run.parquet.partial"
    _chunk(5, 6).write_parquet(staging / "part-000002.parquet")
    resumed = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=1)
    assert resumed.completed_chunks == 1
    assert not (staging / "part-000002.parquet").exists()


def test_finished_output_is_not_overwritten_silently(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [])
    writer.finalize()
    with pytest.raises(ResumeError, match=r"run\.parquet already exists; pass --overwrite"):
        ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)


def test_fingerprint_mismatch_raises(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [])
    with pytest.raises(ResumeError, match=r"differs in: input_sha256\).*--overwrite"):
        ChunkedWriter(out, fingerprint={**FINGERPRINT, "input_sha256": "other"}, chunk_size=2)
    with pytest.raises(ResumeError, match=r"differs in: chunk_size\)"):
        ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=3)
    # Tuples and lists are the same once stored as JSON: not a mismatch.
    same = ChunkedWriter(out, fingerprint={**FINGERPRINT}, chunk_size=2)
    assert same.completed_chunks == 1


def test_overwrite_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [_error(0)])
    writer.finalize()
    (tmp_path / "run.jsonl.partial").mkdir()  # and a partial run of another job
    (tmp_path / "run.jsonl.partial" / "part-000000.parquet").write_bytes(b"junk")

    fresh = ChunkedWriter(out, fingerprint={"input_sha256": "new"}, chunk_size=2, overwrite=True)
    assert fresh.completed_chunks == 0
    assert not out.exists()
    assert not (tmp_path / "run.errors.jsonl").exists()
    fresh.write_chunk(0, _chunk(7, 8), [])
    assert fresh.finalize() == (out, None)
    assert [row["id"] for row in _read_jsonl(out)] == ["7"]


def test_crash_during_finalize_is_resumed(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [])
    out.write_text("partial junk\n", encoding="utf-8")  # OUT written, staging not yet removed
    resumed = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    assert resumed.completed_chunks == 1
    resumed.finalize()
    assert [row["id"] for row in _read_jsonl(out)] == ["0", "1"]


def test_writer_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.jsonl, \.parquet, \.csv"):
        ChunkedWriter(tmp_path / "run.xlsx", fingerprint=FINGERPRINT, chunk_size=2)
    writer = ChunkedWriter(tmp_path / "run.csv", fingerprint=FINGERPRINT, chunk_size=2)
    with pytest.raises(ValueError, match="expected chunk 0, got chunk 1"):
        writer.write_chunk(1, _chunk(0, 1), [])
    writer.finalize()
    with pytest.raises(RuntimeError):
        writer.write_chunk(0, _chunk(0, 1), [])
