"""The ``evalsuite`` command run for real: through typer's runner, and as a subprocess for kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.results import manifest_path

pytestmark = pytest.mark.model
runner = CliRunner()
EXAMPLE = Path(__file__).parents[2] / "examples" / "answers.jsonl"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def good_records(count: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"r{i}",
            "prediction": f"The answer number {i} is a short sentence.",
            "references": [f"Answer {i}."],
        }
        for i in range(count)
    ]


def read_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def test_score_writes_results_manifest_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    code, output = run("score", str(EXAMPLE), "-m", "bertscore", "-o", str(out))
    assert code == 0, output
    assert "bertscore_f1" in output
    assert "summary" in output
    table = pl.read_parquet(out)
    assert table.height == 40
    assert {"id", "prediction", "references", "bertscore_f1"} <= set(table.columns)
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["metrics"][0]["config_hash"]
    assert manifest["models"]["minilm"]["weights_sha256"]
    assert manifest["input"]["records"] == 40


def test_metric_options_and_field_mapping(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"output": "Paris.", "gold": "Paris is the capital."}])
    out = tmp_path / "out.csv"
    code, output = run(
        "score", str(source), "-m", "bertscore:idf=true,num_layers=3", "--field", "prediction=output",
        "--field", "references=gold", "-o", str(out),
    )  # fmt: skip
    assert code == 0, output
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["metrics"][0]["config"]["idf"] is True
    assert manifest["metrics"][0]["config"]["num_layers"] == 3
    assert pl.read_csv(out)["id"].to_list() == [0]


def test_fail_under_exits_one_and_passes_when_met(tmp_path: Path) -> None:
    code, output = run(
        "score",
        str(EXAMPLE),
        "-m",
        "bertscore",
        "-o",
        str(tmp_path / "a.jsonl"),
        "--fail-under",
        "bertscore_f1=0.99",
    )
    assert code == 1
    assert "bertscore_f1" in output
    assert "below the threshold 0.99" in output
    code, _ = run(
        "score",
        str(EXAMPLE),
        "-m",
        "bertscore",
        "-o",
        str(tmp_path / "b.jsonl"),
        "--fail-under",
        "bertscore_f1=0.1",
    )
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "bertscor"], "Did you mean 'bertscore'"),
        (["-m", "bertscore", "--fail-under", "nope=1"], "unknown score column"),
        (["-m", "bertscore", "--fail-under", "bertscore_f1"], "COLUMN=NUMBER"),
        (["-m", "bertscore", "--field", "answer=output"], "unknown field 'answer'"),
        (["-m", "bertscore", "--on-error", "ignore"], "--on-error"),
        (["-m", "bertscore:model=/no/such/dir"], "not a directory"),
    ],
)
def test_usage_errors_exit_two(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = run("score", str(EXAMPLE), "-o", str(tmp_path / "o.jsonl"), *args)
    assert code == 2
    assert message in output


def test_metrics_and_models_commands() -> None:
    code, output = run("metrics")
    assert code == 0
    for name in ("bertscore", "embedding_similarity", "semantic_entropy", "selfcheck_nli", "factuality"):
        assert name in output
    code, output = run("models")
    assert code == 0
    assert "minilm" in output
    assert "packaged" in output


def test_nli_metrics_end_to_end_with_samples_and_source(tmp_path: Path) -> None:
    records = [
        {
            "id": "paris",
            "prompt": "What is the capital of France?",
            "source": "France is a country in Western Europe. Its capital and largest city is Paris.",
            "prediction": "The capital of France is Paris.",
            "samples": ["Paris.", "The capital is Paris.", "It is Paris."],
            "sample_logprobs": [-0.2, -0.4, -0.3],
        },
        {
            "id": "legs",
            "prompt": "How many legs does a spider have?",
            "source": "Spiders are arachnids. Every spider has eight legs.",
            "prediction": "A spider has six legs.",
            "samples": ["Eight legs.", "Six legs.", "Spiders have ten legs."],
        },
    ]
    source = write_jsonl(tmp_path / "rag.jsonl", records)
    out = tmp_path / "scores.jsonl"
    code, output = run(
        "score", str(source), "-m", "semantic_entropy", "-m", "selfcheck_nli", "-m", "factuality:granularity=window",
        "-o", str(out),
    )  # fmt: skip
    assert code == 0, output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["paris", "legs"]
    for column in ("semantic_entropy_discrete_entropy", "selfcheck_nli_max", "factuality_mean"):
        assert all(isinstance(row[column], float) for row in rows), column
    assert rows[0]["semantic_entropy_entropy"] is not None
    assert rows[1]["semantic_entropy_entropy"] is None  # no log-probabilities given
    assert len(rows[1]["semantic_entropy_cluster_ids"]) == 3
    assert rows[0]["factuality_mean"] > rows[1]["factuality_mean"]
    assert rows[0]["factuality_claims"][0]["claim"] == "The capital of France is Paris."
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["models"]["nli-minilm"]["source"] == "packaged"
    assert "factuality_mean" in output


BAD_LINES = {
    "malformed JSON": (b'{"prediction": "x", "references": ["y"]\n', "malformed JSON"),
    "missing field": (b'{"prediction": "x"}\n', "missing required field 'references'"),
    "wrong type": (b'{"prediction": "x", "references": 3}\n', "field 'references' must be"),
    "empty string": (b'{"prediction": "", "references": ["y"]}\n', "field 'prediction'"),
    "invalid UTF-8": (b'{"prediction": "caf\xe9", "references": ["y"]}\n', "invalid UTF-8"),
}


def bad_file(tmp_path: Path, bad: bytes) -> Path:
    good = [json.dumps(record).encode() + b"\n" for record in good_records(4)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(good[0] + good[1] + bad + good[2] + good[3])  # the bad record is on line 3
    return path


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_input_fails_with_location(tmp_path: Path, case: str) -> None:
    bad, reason = BAD_LINES[case]
    source = bad_file(tmp_path, bad)
    out = tmp_path / "out.jsonl"
    code, output = run("score", str(source), "-m", "bertscore", "-o", str(out))
    assert code == 2
    assert f"{source}:3" in output.replace("\n", "")
    assert reason in output.replace("\n", "")
    assert not out.exists()


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_input_skipped_and_logged(tmp_path: Path, case: str) -> None:
    bad, reason = BAD_LINES[case]
    source = bad_file(tmp_path, bad)
    out = tmp_path / "out.jsonl"
    code, output = run("score", str(source), "-m", "bertscore", "-o", str(out), "--on-error", "skip")
    assert code == 0, output
    assert read_ids(out) == ["r0", "r1", "r2", "r3"]
    errors = [json.loads(line) for line in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1
    assert errors[0]["location"] == f"{source}:3"
    assert reason in errors[0]["reason"]
    assert "1 bad records" in output
    summary = json.loads(manifest_path(out).read_text())["summary"]
    assert all(row["errors"] == 1 for row in summary)


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_overlong_text_is_truncated_counted_and_reported_once(tmp_path: Path, on_error: str) -> None:
    long_text = " ".join(["word"] * 700)  # over MiniLM's 512-token limit
    records = [*good_records(2), {"id": "long1", "prediction": long_text, "references": ["w"]}]
    records.append({"id": "long2", "prediction": long_text + " more", "references": ["w"]})
    source = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    code, output = run("score", str(source), "-m", "bertscore", "-o", str(out), "--on-error", on_error)
    assert code == 0, output
    # The runtime's warning, shown by the CLI as one line.
    assert (
        len([line for line in output.splitlines() if line.startswith("warning:") and "truncated" in line])
        == 1
    )
    assert read_ids(out) == ["r0", "r1", "long1", "long2"]
    assert json.loads(manifest_path(out).read_text())["truncated_texts"] == {"minilm": 2}
    assert "2 texts were truncated" in output


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert run("score", str(EXAMPLE), "-m", "bertscore", "-o", str(out))[0] == 0
    code, output = run("score", str(EXAMPLE), "-m", "bertscore", "-o", str(out))
    assert code == 2
    assert "--overwrite" in output
    assert run("score", str(EXAMPLE), "-m", "bertscore", "-o", str(out), "--overwrite")[0] == 0
    assert len(read_ids(out)) == 40


@pytest.mark.slow
def test_resume_after_kill_9_gives_every_record_exactly_once(tmp_path: Path) -> None:
    count = 800
    source = write_jsonl(tmp_path / "in.jsonl", good_records(count))
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "evalsuite", "score", str(source), "-m", "bertscore", "-o", str(out),
               "--chunk-size", "20", "--batch-size", "8", "--cache-path", str(tmp_path / "cache.sqlite")]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    staging = Path(f"{out}.partial")
    deadline = time.monotonic() + 120
    with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        while not (staging / "part-000002.parquet").exists():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists(), "the run finished before it could be killed"
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr
    ids = read_ids(out)
    assert len(ids) == count
    assert sorted(ids) == sorted(f"r{i}" for i in range(count))
    assert not staging.exists()
