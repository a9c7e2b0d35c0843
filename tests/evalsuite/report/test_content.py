"""evalsuite.report.content: the numbers a report shows are the run's and `compare`'s, over every record."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from evalsuite.errors import ConfigError
from evalsuite.report import build_report
from evalsuite.results import MetricInfo, compare, scan_results
from tests.dashboards.conftest import write_run


def test_statistics_are_the_runs_and_compares(baseline: Path, candidate: Path) -> None:
    report = build_report(candidate, versus=baseline, resamples=500, seed=3)
    assert report.summary.equals(scan_results(candidate).summary())
    expected = compare(
        scan_results(baseline).scores(), scan_results(candidate).scores(), n_resamples=500, seed=3
    )
    assert report.comparison is not None
    assert report.comparison.table.equals(expected.table)
    assert any("bertscore: config hash differs" in line for line in report.warnings)
    assert report.base is not None
    assert report.base.label == "A"
    assert report.run.label == "B"


def test_histograms_count_every_record_of_both_runs_over_one_range(baseline: Path, candidate: Path) -> None:
    report = build_report(candidate, versus=baseline, bins=12)
    counts = report.histograms["bertscore_f1"]
    per_run = counts.group_by("run").agg(pl.col("count").sum(), pl.len().alias("bins"), pl.col("start").min())
    assert sorted(per_run["count"].to_list()) == [60, 60]
    assert per_run["bins"].to_list() == [12, 12]
    assert per_run["start"].n_unique() == 1  # the same bins, so the bars overlay


def test_worst_records_are_the_exact_bottom_of_the_whole_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "big.parquet", n=500, seed=4)
    report = build_report(run, worst=4, max_records=50)
    table = pl.read_parquet(run)
    by_metric = {group.metric.name: group for group in report.worst}
    # Higher is better for BERTScore: its worst are the lowest F1 of all 500 records.
    lowest = table.sort("bertscore_f1").head(4)["id"].to_list()
    assert [row["id"] for row in by_metric["bertscore"].rows] == lowest
    # Lower is better for SelfCheck: its worst are the highest means.
    highest = table.sort("selfcheck_nli_mean", descending=True).head(4)["id"].to_list()
    assert [row["id"] for row in by_metric["selfcheck_nli"].rows] == highest
    assert by_metric["selfcheck_nli"].rows[0]["selfcheck_nli_sentences"]  # whole records, evidence included


def test_large_runs_are_sampled_for_the_record_table_only(tmp_path: Path) -> None:
    run = write_run(tmp_path / "big.parquet", n=500, seed=4)
    report = build_report(run, max_records=50, seed=7)
    assert report.sampled
    assert report.sample.height == 50
    assert report.sample["id"].is_unique().all()
    assert report.sample["id"].to_list() == sorted(report.sample["id"].to_list())  # file order
    assert report.sample.equals(build_report(run, max_records=50, seed=7).sample)
    assert not report.sample.equals(build_report(run, max_records=50, seed=8).sample)
    assert report.summary.filter(pl.col("score") == "bertscore_f1")["n"].item() == 500


def test_records_that_got_worse_pair_both_runs(baseline: Path, candidate: Path) -> None:
    report = build_report(candidate, versus=baseline, worst=3)
    assert report.comparison is not None
    group = next(group for group in report.worsened if group.metric.name == "factuality")
    changes = report.comparison.changes("factuality_mean").filter(pl.col("improvement") < 0).head(3)
    assert [row["id"] for row in group.rows] == changes["id"].to_list()
    for row in group.rows:
        before = group.base_rows[row["id"]]
        assert group.differences[row["id"]] == pytest.approx(
            row["factuality_mean"] - before["factuality_mean"]
        )


def test_a_run_without_a_manifest_is_reported_with_a_warning(tmp_path: Path) -> None:
    run = tmp_path / "bare.jsonl"
    run.write_text(
        "\n".join(json.dumps({"id": f"r{i}", "prediction": "x", "quality_score": i / 10}) for i in range(5))
        + "\n"
    )
    report = build_report(run)
    assert any("has no manifest (bare.manifest.json)" in line for line in report.warnings)
    assert report.summary["score"].to_list() == ["quality_score"]
    assert report.run.provenance[0] == ("result file", str(run))


def test_runs_with_no_common_ids_keep_the_report_and_say_why(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a.parquet", n=10, seed=1)
    b_table = pl.read_parquet(a).with_columns(("other-" + pl.col("id")).alias("id"))
    b = tmp_path / "b.parquet"
    b_table.write_parquet(b)
    (tmp_path / "b.manifest.json").write_text((tmp_path / "a.manifest.json").read_text())
    report = build_report(b, versus=a)
    assert report.comparison is None
    assert report.worsened == []
    assert any("no record id in common" in line and "'other-r000'" in line for line in report.warnings)


def test_unreadable_input_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_report(tmp_path / "missing.parquet")
    with pytest.raises(ConfigError, match="max_records must be >= 0"):
        build_report(write_run(tmp_path / "a.parquet", n=3), max_records=-1)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (("bertscore_precision", "bertscore_recall", "bertscore_f1"), "bertscore_f1"),
        (("pii_email", "pii_total"), "pii_total"),
        (("selfcheck_nli_mean", "selfcheck_nli_max"), "selfcheck_nli_mean"),
        (("rouge_l",), "rouge_l"),
    ],
)
def test_primary_column(columns: tuple[str, ...], expected: str) -> None:
    name = expected.rsplit("_", 1)[0] if expected != "rouge_l" else "rouge"
    assert MetricInfo(name, columns).primary_column == expected
