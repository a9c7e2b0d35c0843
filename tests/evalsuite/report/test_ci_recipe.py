"""The GitHub Actions recipe (examples/github-actions/evalsuite.yml), its shell steps run locally.

A "main" checkout is scored first and its run stored where the recipe's download step puts it; then a
pull request that breaks ten answers runs every `run:` step except those that need GitHub (the
install, `gh` calls): the report must be written, the comment must fit and show the loss, and the gate
must fail. The same pull request without the broken answers must pass the gate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evalsuite.report import GITHUB_COMMENT_LIMIT

REPO = Path(__file__).parents[3]
RECIPE = REPO / "examples" / "github-actions" / "evalsuite.yml"

pytestmark = [pytest.mark.slow, pytest.mark.model]  # scores the example file with the packaged MiniLM


def _steps() -> list[dict[str, str]]:
    workflow = yaml.safe_load(RECIPE.read_text())
    steps: list[dict[str, str]] = workflow["jobs"]["evaluate"]["steps"]
    return steps


def _local_steps() -> list[dict[str, str]]:
    """The steps a local machine can run: shell steps that need neither pip nor GitHub's API."""
    return [
        step for step in _steps() if "run" in step and "gh " not in step["run"] and "pip " not in step["run"]
    ]


def _run(step: dict[str, str], checkout: Path, summary: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **yaml.safe_load(RECIPE.read_text())["env"],
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=checkout, env=env, capture_output=True, text=True, timeout=600
    )


def _checkout(root: Path, name: str, broken: int) -> Path:
    checkout = root / name
    (checkout / "examples").mkdir(parents=True)
    lines = (REPO / "examples" / "answers.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    for record in records[:broken]:
        record["prediction"] = "I cannot answer that."
    (checkout / "examples" / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return checkout


def test_recipe_structure() -> None:
    names = [step.get("name", step.get("uses", "")) for step in _steps()]
    assert names.index("Score") < names.index("Report") < names.index("Comment on the pull request")
    assert names[-1] == "Fail if a score got significantly worse"
    upload = next(step for step in _steps() if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"  # main's run is stored even when the gate fails
    comment = next(step for step in _steps() if step.get("name") == "Comment on the pull request")
    assert "--body-file" in comment["run"]
    assert "report.md" in comment["run"]


@pytest.mark.parametrize("broken", [10, 0])
def test_recipe_steps_run_locally(tmp_path: Path, broken: int) -> None:
    main = _checkout(tmp_path, "main", broken=0)
    score = next(step for step in _local_steps() if step["name"] == "Score")
    done = _run(score, main, tmp_path / "main-summary.md")
    assert done.returncode == 0, done.stderr
    pr = _checkout(tmp_path, "pr", broken=broken)
    stored = pr / "eval" / "main"
    stored.mkdir(parents=True)
    for name in ("run.parquet", "run.manifest.json"):  # what the download step leaves there
        shutil.copyfile(main / "eval" / name, stored / name)

    summary = tmp_path / "summary.md"
    outcomes = {step["name"]: _run(step, pr, summary) for step in _local_steps()}
    gate = outcomes.pop("Fail if a score got significantly worse")
    for name, outcome in outcomes.items():
        assert outcome.returncode == 0, f"{name}: {outcome.stderr}"
    comment = (pr / "eval" / "report.md").read_text()
    assert len(comment) <= GITHUB_COMMENT_LIMIT
    assert summary.read_text() == comment
    assert (pr / "eval" / "report.html").stat().st_size > 100_000
    if broken:
        assert "🔴 worse" in comment
        assert gate.returncode == 1
        assert "got worse:" in gate.stderr
        assert "bertscore_f1" in gate.stderr
    else:
        assert "🔴 worse" not in comment
        assert gate.returncode == 0, gate.stderr
