"""The command line under hostile but fair use: nothing deleted, nothing lost, no traceback.

Exit codes: 0 ok, 1 a threshold failed, 2 a usage or input error, 3 an unexpected failure. The runs
use ``pii`` (no model weights), so they are fast.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import evalsuite.api
from evalsuite.checkpoint import OutputLock
from evalsuite.cli import app
from evalsuite.cli_common import UNEXPECTED_FAILURE, USAGE_ERROR
from evalsuite.results import manifest_path

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--no-cache"])
    return result.exit_code, result.output


def write_lines(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def records(count: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "prediction": f"answer {i}, mail a{i}@example.com"} for i in range(count)]


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(autouse=True)
def crash_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "crash-reports"
    monkeypatch.setenv("EVALSUITE_LOG_DIR", str(folder))
    return folder


def test_scoring_a_file_into_itself_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "d.jsonl", records(3))
    before = source.read_bytes()
    code, output = run("score", str(source), "-m", "pii", "-o", str(source), "--overwrite")
    assert code == USAGE_ERROR
    assert "the output would overwrite the input" in output
    assert source.read_bytes() == before


def test_an_input_named_like_the_errors_file_is_kept(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "X.errors.jsonl", records(3))
    before = source.read_bytes()
    code, output = run("score", str(source), "-m", "pii", "-o", str(tmp_path / "X.jsonl"))
    assert code == USAGE_ERROR, output
    assert source.read_bytes() == before


def test_an_unexpected_failure_exits_3_with_one_line_and_a_traceback_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_reports: Path
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr("metrics.pii.find_pii", broken)
    source = write_lines(tmp_path / "in.jsonl", records(2))
    code, output = run("score", str(source), "-m", "pii", "-o", str(tmp_path / "out.jsonl"))
    assert code == UNEXPECTED_FAILURE
    lines = output.strip().splitlines()
    assert len(lines) == 1
    assert "unexpected failure: RuntimeError: the disk caught fire" in lines[0]
    assert "Traceback" not in output
    (report,) = crash_reports.iterdir()
    assert str(report) in output.replace("\n", "")
    assert "the disk caught fire" in report.read_text(encoding="utf-8")


def test_killed_before_the_manifest_the_rerun_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_lines(tmp_path / "in.jsonl", records(5))
    out = tmp_path / "out.jsonl"
    real = evalsuite.api.write_manifest

    def killed(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # the process dies with the output committed, the manifest not written

    monkeypatch.setattr(evalsuite.api, "write_manifest", killed)
    result = runner.invoke(app, ["score", str(source), "-m", "pii", "-o", str(out), "--chunk-size", "2"])
    assert result.exit_code != 0
    assert out.is_file()
    assert not manifest_path(out).exists()
    monkeypatch.setattr(evalsuite.api, "write_manifest", real)
    code, output = run("score", str(source), "-m", "pii", "-o", str(out), "--chunk-size", "2")
    assert code == 0, output
    assert ids(out) == [f"r{i}" for i in range(5)]
    assert json.loads(manifest_path(out).read_text(encoding="utf-8"))["input"]["records"] == 5
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_a_second_run_into_the_same_output_exits_2_naming_the_first(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", records(3))
    out = tmp_path / "out.jsonl"
    lock = OutputLock(out)
    lock.acquire()  # the first run, still writing
    try:
        code, output = run("score", str(source), "-m", "pii", "-o", str(out), "--overwrite")
    finally:
        lock.release()
    assert code == USAGE_ERROR
    assert "another evalsuite run is writing out.jsonl (pid" in output.replace("\n", " ")
    assert run("score", str(source), "-m", "pii", "-o", str(out))[0] == 0


def test_a_lone_surrogate_is_quarantined_in_skip_mode_and_stops_fail_mode(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": "a", "prediction": "x \\ud800"}\n{"id": "b", "prediction": "fine"}\n'
        '{"id": "\\udfff", "prediction": "fine too"}\n',
        encoding="utf-8",
    )
    code, output = run("score", str(source), "-m", "pii", "-o", str(tmp_path / "fail.jsonl"))
    assert code == USAGE_ERROR
    assert "in.jsonl:1: field 'prediction' is not valid Unicode" in output.replace("\n", " ")
    out = tmp_path / "skip.jsonl"
    code, output = run("score", str(source), "-m", "pii", "-o", str(out), "--on-error", "skip")
    assert code == 0, output
    assert ids(out) == ["b"]
    errors = [json.loads(line) for line in (tmp_path / "skip.errors.jsonl").read_text().splitlines()]
    assert [(e["location"].rsplit(":", 1)[1], e["field"]) for e in errors] == [
        ("1", "prediction"),
        ("3", "id"),
    ]
    assert errors[0]["record"]["prediction"] == "x \ud800"  # the record is kept, as it was


def test_a_truncated_gzip_exits_2_or_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    data = "".join(json.dumps(record) + "\n" for record in records(3000)).encode()
    compressed = gzip.compress(data)
    source = tmp_path / "cut.jsonl.gz"
    source.write_bytes(compressed[: len(compressed) // 2])
    code, output = run("score", str(source), "-m", "pii", "-o", str(tmp_path / "fail.jsonl"))
    assert code == USAGE_ERROR
    assert "the compressed file is cut or damaged here" in output
    out = tmp_path / "skip.jsonl"
    code, output = run("score", str(source), "-m", "pii", "-o", str(out), "--on-error", "skip")
    assert code == 0, output
    kept = ids(out)
    assert len(kept) > 100
    assert kept == [f"r{i}" for i in range(len(kept))]


@pytest.mark.parametrize(
    ("name", "content"), [("bad.parquet", b"PAR1 not parquet"), ("bad.jsonl.gz", b"not gzip\n")]
)
def test_an_unreadable_file_exits_2_without_a_traceback(tmp_path: Path, name: str, content: bytes) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    code, output = run("score", str(source), "-m", "pii", "-o", str(tmp_path / "out.jsonl"))
    assert code == USAGE_ERROR
    assert "not a readable" in output
    assert "Traceback" not in output


def test_an_input_field_named_like_a_score_column_is_an_input_error(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"id": "a", "prediction": "x", "pii_email": 7}])
    code, output = run("score", str(source), "-m", "pii", "-o", str(tmp_path / "out.jsonl"))
    assert code == USAGE_ERROR
    assert "field 'pii_email' has the name of a column this run writes" in output.replace("\n", " ")


def test_metadata_of_mixed_types_across_chunks_finishes_as_json_text(tmp_path: Path) -> None:
    rows = [{"id": "a", "prediction": "x", "m": {"a": 1}}, {"id": "b", "prediction": "y", "m": [1]}]
    source = write_lines(tmp_path / "in.jsonl", rows)
    for out in (tmp_path / "out.parquet", tmp_path / "out.jsonl", tmp_path / "out.csv"):
        code, output = run("score", str(source), "-m", "pii", "-o", str(out), "--chunk-size", "1")
        assert code == 0, output
        assert "warning: column(s) 'm' hold values of more than one type" in output.replace("\n", " ")
        assert json.loads(manifest_path(out).read_text())["json_text_columns"] == ["m"]
