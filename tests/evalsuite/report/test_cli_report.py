"""``evalsuite report`` through the real command: outputs, warnings, and bad input as clear messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.report import html as report_html
from tests.dashboards.conftest import write_run

runner = CliRunner()


def test_default_outputs_sit_beside_the_run(candidate: Path) -> None:
    result = runner.invoke(app, ["report", str(candidate)])
    assert result.exit_code == 0, result.output
    page = candidate.with_name("pr.report.html")
    assert f"report: {page}" in result.output.replace("\n", "")
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "vegaEmbed" in text
    assert "<script src" not in text
    assert "<link" not in text
    result = runner.invoke(app, ["report", str(candidate), "-o", str(candidate.with_name("comment.md"))])
    assert result.exit_code == 0, result.output
    assert candidate.with_name("comment.md").read_text().startswith("## evalsuite report: pr.parquet")


def test_a_run_without_a_manifest_warns_and_reports(tmp_path: Path) -> None:
    run = tmp_path / "bare.jsonl"
    run.write_text("\n".join(json.dumps({"id": f"r{i}", "quality_score": i / 4}) for i in range(4)) + "\n")
    result = runner.invoke(app, ["report", str(run), "--format", "markdown", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert "warning: run bare.jsonl has no manifest (bare.manifest.json)" in " ".join(result.stderr.split())
    assert "| quality_score | ↑ | 0.3750 |" in result.stdout
    assert "has no manifest" in result.stdout  # the warning is in the report too


def test_runs_with_no_common_ids_warn_and_still_report(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a.parquet", n=6, seed=1)
    b = tmp_path / "b.parquet"
    pl.read_parquet(a).with_columns(("x" + pl.col("id")).alias("id")).write_parquet(b)
    result = runner.invoke(app, ["report", str(b), "--versus", str(a), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "the comparison is left out: runs A and B have no record id in common" in " ".join(
        result.stderr.split()
    )
    assert "no record id in common" in (tmp_path / "r.html").read_text()
    compared = runner.invoke(app, ["compare", str(a), str(b)])
    assert compared.exit_code == 2
    assert "no record id in common" in compared.output
    assert "Traceback" not in compared.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.parquet"], "does not exist"),
        (["{run}", "--format", "pdf"], "report format must be 'html' or 'markdown', got 'pdf'"),
        (["{run}", "--versus", "missing.parquet"], "does not exist"),
        (["{run}", "--worst", "-1"], "worst must be >= 0"),
    ],
)
def test_usage_errors_exit_2_with_a_message(candidate: Path, arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["report", *(argument.format(run=candidate) for argument in arguments)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_html_without_the_report_extra_names_it(candidate: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vl_convert", None)
    report_html._vega_embed_bundle.cache_clear()
    try:
        result = runner.invoke(app, ["report", str(candidate)])
    finally:
        report_html._vega_embed_bundle.cache_clear()
    assert result.exit_code == 2
    assert "pip install 'evalsuite[report]'" in " ".join(result.output.split())
    markdown = runner.invoke(app, ["report", str(candidate), "--format", "markdown", "-o", "-"])
    assert markdown.exit_code == 0  # markdown needs neither Altair nor vl-convert
