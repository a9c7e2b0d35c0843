"""The command line stays import-light: no model stack for help, none for a run served from the cache.

Each check runs in a fresh interpreter, since this test process has long imported torch and friends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HEAVY = ("torch", "transformers", "sklearn", "scipy")

# Runs the CLI in-process through typer's runner, then reports the exit code, the output and which of
# the heavy modules the run imported.
RUN_AND_REPORT = (
    f"HEAVY = {HEAVY!r}\n"
    + """
import json, sys
from typer.testing import CliRunner
from evalsuite.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({
    "code": result.exit_code,
    "output": result.output,
    "heavy": sorted(name for name in HEAVY if name in sys.modules),
}))
"""
)


def run_cli_in_fresh_process(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.slow
def test_help_imports_no_model_stack() -> None:
    report = run_cli_in_fresh_process("--help")
    assert report["code"] == 0, report["output"]
    assert "score" in report["output"]
    assert report["heavy"] == []


@pytest.mark.slow
@pytest.mark.model
def test_a_fully_cached_score_run_does_not_import_torch(tmp_path: Path) -> None:
    source = tmp_path / "answers.jsonl"
    records = [
        {"id": f"r{i}", "prediction": f"The answer number {i} is short.", "references": [f"Answer {i}."]}
        for i in range(4)
    ]
    source.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    cache = tmp_path / "cache.sqlite"

    def score(output: str) -> dict[str, Any]:
        return run_cli_in_fresh_process(
            "score", str(source), "-m", "bertscore", "-o", str(tmp_path / output), "--cache-path", str(cache)
        )

    first = score("first.jsonl")
    assert first["code"] == 0, first["output"]
    assert "0 of 4 metric scores from cache" in first["output"]
    again = score("again.jsonl")  # the same input into a new output: every score from the cache
    assert again["code"] == 0, again["output"]
    assert "4 of 4 metric scores from cache" in again["output"]
    assert "torch" not in again["heavy"], again["heavy"]
