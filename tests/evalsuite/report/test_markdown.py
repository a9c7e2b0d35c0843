"""evalsuite.report.markdown: compare's numbers, in a comment that fits GitHub's limit (and says when cut)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.report import GITHUB_COMMENT_LIMIT, build_report, render_markdown
from evalsuite.report.format import difference, interval, number, p_value
from evalsuite.report.markdown import cell
from tests.dashboards.conftest import write_run


def test_markdown_holds_compares_numbers(baseline: Path, candidate: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    comparison_json = tmp_path / "comparison.json"
    result = runner.invoke(app, ["compare", str(baseline), str(candidate), "--json", str(comparison_json)])
    assert result.exit_code == 0, result.output
    expected = json.loads(comparison_json.read_text())
    result = runner.invoke(
        app, ["report", str(candidate), "--versus", str(baseline), "--format", "markdown", "-o", "-"]
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    comparison = text.split("### Comparison")[1].split("### Summary")[0]
    rows = {
        line.split(" | ")[0].removeprefix("| "): line
        for line in comparison.splitlines()
        if line.startswith("| ")
    }
    for row in expected["scores"]:
        cells = [part.strip() for part in rows[row["score"]].strip("|").split(" | ")]
        assert cells[2:9] == [
            str(row["n"]),
            number(row["mean_a"]),
            number(row["mean_b"]),
            difference(row["diff"]),
            interval(row["ci_low"], row["ci_high"], signed=True),
            p_value(row["p_value"]),
            f"{row['wins']}/{row['ties']}/{row['losses']}",
        ]
        assert row["verdict"] in cells[9]
    assert "> [!WARNING]" in text
    assert "bertscore: config hash differs" in text
    assert len(text) <= GITHUB_COMMENT_LIMIT
    assert "Truncated" not in text


def test_summary_rows_are_the_runs_summary(candidate: Path) -> None:
    report = build_report(candidate)
    text = render_markdown(report)
    for row in report.summary.iter_rows(named=True):
        assert f"| {row['score']} | " in text
        assert (
            f"| {number(row['mean'])} | {number(row['std'])} | {interval(row['ci_low'], row['ci_high'])} |"
            in text
        )


def test_a_large_report_is_cut_to_the_limit_with_a_note(tmp_path: Path) -> None:
    run = write_run(tmp_path / "big.parquet", n=3000, seed=5)
    long = pl.read_parquet(run).with_columns(
        (pl.col("prediction") + " " + "padding " * 30).alias("prediction")
    )
    long.write_parquet(run)
    report = build_report(run, worst=400, max_records=10)
    text = render_markdown(report)
    assert len(text) <= GITHUB_COMMENT_LIMIT
    assert "Truncated to fit GitHub's 65,536-character comment limit" in text
    left_out = re.search(r"left out (\d+) records", text)
    assert left_out
    assert int(left_out.group(1)) > 0
    # The statistics are never what gets cut.
    assert all(f"| {score} | " in text for score in report.summary["score"])
    small = render_markdown(report, limit=4000)
    assert len(small) <= 4000
    assert "Truncated" in small


def test_cells_cannot_break_the_table_or_inject_html() -> None:
    assert cell("a | b\n<script>x</script>") == "a \\| b &lt;script&gt;x&lt;/script&gt;"
    assert cell("word " * 100, chars=20).endswith("…")
    assert len(cell("word " * 100, chars=20)) == 20
