from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from evalsuite.checkpoint import ChunkedWriter, table_from_rows
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


def _interrupt(writer: ChunkedWriter) -> None:
    """What leaving ``with writer:`` on an exception does: unlock, and keep the checkpoint to resume."""
    writer.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)


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
    assert (tmp_path / f"run{ext}.partial").exists()  # until the manifest is written and close() is called
    writer.close()
    assert not (tmp_path / f"run{ext}.partial").exists()
    assert not (tmp_path / f"run{ext}.lock").exists()

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
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=10)
    assert writer.finalize() == (out, None)
    writer.close()
    if ext == ".parquet":
        assert pl.read_parquet(out).shape == (0, 0)
    else:
        assert out.read_bytes() == b""


def test_no_errors_gives_none_and_removes_the_errors_file_of_an_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    manifest = tmp_path / "run.manifest.json"
    (tmp_path / "run.errors.jsonl").write_text('{"old": 1}\n', encoding="utf-8")
    manifest.write_text(json.dumps({"output": str(out), "errors_file": str(tmp_path / "run.errors.jsonl")}))
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2, manifest=manifest)
    writer.write_chunk(0, _chunk(0, 2), [])
    assert writer.finalize() == (out, None)
    writer.close()
    assert not (tmp_path / "run.errors.jsonl").exists()


def test_an_errors_file_no_run_wrote_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    theirs = tmp_path / "run.errors.jsonl"
    theirs.write_text('{"mine": 1}\n', encoding="utf-8")
    manifest = tmp_path / "run.manifest.json"
    with pytest.raises(
        ConfigError, match=r"run\.errors\.jsonl exists, but no earlier run into run\.jsonl wrote it"
    ):
        ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2, manifest=manifest, overwrite=True)
    # An earlier manifest that lists no errors file does not make it ours either.
    manifest.write_text(json.dumps({"output": str(out), "errors_file": None}), encoding="utf-8")
    with pytest.raises(ConfigError, match="no earlier run"):
        ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2, manifest=manifest)
    assert theirs.read_text(encoding="utf-8") == '{"mine": 1}\n'
    assert not (tmp_path / "run.jsonl.partial").exists()
    assert not (tmp_path / "run.jsonl.lock").exists()


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
    writer.close()  # unfinished: the lock goes, the checkpoint stays (as when the process dies)

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
    resumed.close()

    assert [row["id"] for row in _read_jsonl(out)] == ["0", "1", "2", "3", "4"]
    assert errors_path is not None
    assert [e["index"] for e in _read_jsonl(errors_path)] == [1]


def test_a_gap_in_parts_ends_the_committed_prefix(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=1)
    writer.write_chunk(0, _chunk(0, 1), [])
    writer.close()
    staging = tmp_path / "run.parquet.partial"
    _chunk(5, 6).write_parquet(staging / "part-000002.parquet")
    resumed = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=1)
    assert resumed.completed_chunks == 1
    assert not (staging / "part-000002.parquet").exists()
    resumed.close()


def test_finished_output_is_not_overwritten_silently(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [])
    writer.finalize()
    writer.close()
    with pytest.raises(ResumeError, match=r"run\.parquet already exists; pass --overwrite"):
        ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)


def test_fingerprint_mismatch_raises(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [])
    writer.close()
    with pytest.raises(ResumeError, match=r"differs in: input_sha256\).*--overwrite"):
        ChunkedWriter(out, fingerprint={**FINGERPRINT, "input_sha256": "other"}, chunk_size=2)
    with pytest.raises(ResumeError, match=r"differs in: chunk_size\)"):
        ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=3)
    # Tuples and lists are the same once stored as JSON: not a mismatch.
    same = ChunkedWriter(out, fingerprint={**FINGERPRINT}, chunk_size=2)
    assert same.completed_chunks == 1
    same.close()


def test_overwrite_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [_error(0)])
    writer.finalize()
    _interrupt(writer)  # before close(): the checkpoint of the finished job stays

    fresh = ChunkedWriter(out, fingerprint={"input_sha256": "new"}, chunk_size=2, overwrite=True)
    assert fresh.completed_chunks == 0
    assert not out.exists()
    fresh.write_chunk(0, _chunk(7, 8), [])
    assert fresh.finalize() == (out, None)
    assert not (tmp_path / "run.errors.jsonl").exists()  # the checkpoint said the job wrote it
    fresh.close()
    assert [row["id"] for row in _read_jsonl(out)] == ["7"]


def test_crash_during_finalize_is_resumed(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    writer.write_chunk(0, _chunk(0, 2), [])
    writer.close()
    out.write_text("partial junk\n", encoding="utf-8")  # OUT written, staging not yet removed
    resumed = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    assert resumed.completed_chunks == 1
    resumed.finalize()
    resumed.close()
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
    writer.close()


# --------------------------------------------------------------------------------------------
# Never delete a file the run did not create


@pytest.mark.parametrize("link", ["same name", "symlink", "hard link"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(
    tmp_path: Path, link: str, overwrite: bool
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"prediction": "precious"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    if link == "same name":
        out = source
    elif link == "symlink":
        out.symlink_to(source)
    else:
        os.link(source, out)
    with pytest.raises(
        ConfigError, match=r"the output would overwrite the input: .* choose another --output"
    ):
        ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2, overwrite=overwrite, inputs=[source])
    assert source.read_text(encoding="utf-8") == '{"prediction": "precious"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"in.jsonl", out.name})


def test_an_input_named_like_the_errors_file_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "run.errors.jsonl"
    source.write_text('{"prediction": "precious"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"run\.errors\.jsonl is .*run\.errors\.jsonl"):
        ChunkedWriter(tmp_path / "run.jsonl", fingerprint=FINGERPRINT, chunk_size=2, inputs=[source])
    assert source.is_file()


def test_a_folder_that_is_not_a_checkpoint_is_never_deleted(tmp_path: Path) -> None:
    mine = tmp_path / "run.jsonl.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    for overwrite in (False, True):
        with pytest.raises(
            ConfigError, match=r"run\.jsonl\.partial exists and is not an evalsuite checkpoint"
        ):
            ChunkedWriter(tmp_path / "run.jsonl", fingerprint=FINGERPRINT, chunk_size=2, overwrite=overwrite)
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"


# --------------------------------------------------------------------------------------------
# One run per output


def test_a_second_writer_of_the_same_output_is_refused_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    first = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2)
    first.write_chunk(0, _chunk(0, 2), [])
    with pytest.raises(
        ResumeError, match=rf"another evalsuite run is writing run\.jsonl \(pid {os.getpid()} "
    ):
        ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2, overwrite=True)
    assert (tmp_path / "run.jsonl.partial" / "part-000000.parquet").is_file()  # nothing of the first lost
    first.finalize()
    first.close()
    assert not (tmp_path / "run.jsonl.lock").exists()
    ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2, overwrite=True).close()


def test_a_lock_file_left_by_a_killed_run_does_not_block(tmp_path: Path) -> None:
    (tmp_path / "run.jsonl.lock").write_text("pid 1 on elsewhere, started long ago", encoding="utf-8")
    writer = ChunkedWriter(tmp_path / "run.jsonl", fingerprint=FINGERPRINT, chunk_size=2)
    assert str(os.getpid()) in (tmp_path / "run.jsonl.lock").read_text(encoding="utf-8")
    writer.close()


# --------------------------------------------------------------------------------------------
# Metadata columns whose values have no one type


@pytest.mark.parametrize("ext", [".jsonl", ".parquet", ".csv"])
@pytest.mark.parametrize(
    "values",
    [
        [{"a": 1}, [1]],
        [[1], "text"],
        [{}, []],
        [1, "1"],
        [{"a": 1}, 5],
        [[1, "mixed"], [2]],
        [2**70, 1],
    ],
)
def test_metadata_without_one_type_is_json_text_in_every_format(
    tmp_path: Path, ext: str, values: list[Any]
) -> None:
    out = tmp_path / f"run{ext}"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=1)
    for index, value in enumerate(values):  # one value per chunk: the clash is only seen across chunks
        table, json_columns = table_from_rows([{"id": str(index), "m": value}])
        writer.write_chunk(index, table, [], json_columns=json_columns)
    with pytest.warns(UserWarning, match=r"column\(s\) 'm' hold values of more than one type"):
        writer.finalize()
    writer.close()
    assert writer.json_columns == ["m"]
    stored = [row["m"] for row in _read_out(out)]
    assert [json.loads(text) for text in stored] == values  # nothing nulled, nothing coerced


def test_metadata_mixed_within_one_chunk_is_json_text() -> None:
    table, json_columns = table_from_rows([{"m": {"a": 1}}, {"m": [1]}, {"m": None}, {"n": 1.5}, {"n": 2}])
    assert json_columns == ["m"]
    assert table["m"].to_list() == ['{"a": 1}', "[1]", None, None, None]
    assert table["n"].to_list() == [None, None, None, 1.5, 2.0]  # whole numbers and fractions: one type


def test_metadata_that_widens_stays_native(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    writer = ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=1)
    for index, value in enumerate([{"a": 1}, {"b": "x"}, None, {"a": 2.5}]):
        table, json_columns = table_from_rows([{"id": str(index), "m": value, "n": [index] if index else []}])
        writer.write_chunk(index, table, [], json_columns=json_columns)
    writer.finalize()
    writer.close()
    assert writer.json_columns == []
    assert pl.read_parquet(out)["m"].to_list() == [
        {"a": 1.0, "b": None},
        {"a": None, "b": "x"},
        None,
        {"a": 2.5, "b": None},
    ]


def test_the_output_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "run.jsonl"
    with ChunkedWriter(out, fingerprint=FINGERPRINT, chunk_size=2) as writer:
        writer.write_chunk(0, _chunk(0, 1), [])
        writer.finalize()
    assert _read_out(out) == [{"id": "0", "score": 0.0, "references": ["r0", "x"]}]
