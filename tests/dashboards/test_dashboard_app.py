"""Every dashboard page, run by Streamlit's AppTest over small generated runs (no browser, no server)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from dashboards import APP
from dashboards.data import PATHS_ENV
from evalsuite.cli import app as cli_app
from evalsuite.results import compare, scan_results

TIMEOUT = 60


def open_app(monkeypatch: pytest.MonkeyPatch, *paths: Path | str, page: str | None = None) -> AppTest:
    """The dashboard over ``paths`` (as `evalsuite dashboard` passes them), on ``page`` (default: Runs)."""
    monkeypatch.setenv(PATHS_ENV, os.pathsep.join(str(path) for path in paths))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [error.value for error in at.exception]
    return at


def texts(elements: Any) -> str:
    return "\n".join(str(element.value) for element in elements)


def by_label(widgets: Any, label: str) -> Any:
    matches = [widget for widget in widgets if widget.label == label]
    assert matches, f"no widget labelled {label!r}: {[widget.label for widget in widgets]}"
    return matches[0]


def chart_count(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


# Runs -------------------------------------------------------------------------------------------------------


def test_runs_page_shows_provenance_and_summary(
    monkeypatch: pytest.MonkeyPatch, two_runs: tuple[Path, Path]
) -> None:
    at = open_app(monkeypatch, two_runs[0].parent)
    assert at.title[0].value == "Runs"
    assert [header.value for header in at.header] == ["baseline.parquet", "candidate.parquet"]
    overview = at.dataframe[0].value
    assert overview["run"].tolist() == ["baseline.parquet", "candidate.parquet"]
    assert overview["records"].tolist() == [24, 24]
    facts = texts(at.markdown)
    assert "**evalsuite** 0.1.0" in facts
    assert "**device** cpu / float32" in facts
    assert "**input** answers.jsonl" in facts
    summary = at.dataframe[1].value
    expected = scan_results(two_runs[0]).summary()
    assert summary["score"].tolist() == expected["score"].to_list()
    assert summary["mean"].tolist() == pytest.approx(expected["mean"].to_list())
    assert summary["ci_low"].tolist() == pytest.approx(expected["ci_low"].to_list())
    assert summary.set_index("score").loc["selfcheck_nli_mean", "better"] == "↓"
    assert not at.error
    assert not at.warning


def test_runs_page_with_an_empty_run_and_a_run_with_errors(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path]
) -> None:
    empty = run_factory("empty.parquet", n=0)
    failing = run_factory("failing.jsonl", n=10, errors=2)
    at = open_app(monkeypatch, empty, failing)
    overview = at.dataframe[0].value.set_index("run")
    assert overview.loc["empty.parquet", "records"] == 0
    assert overview.loc["failing.jsonl", "errors"] == 2
    assert "This run has no scored records." in texts(at.info)
    assert any(expander.label == "2 bad records" for expander in at.expander)
    failing_summary = [frame.value for frame in at.dataframe if "score" in frame.value.columns][-1]
    row = failing_summary.set_index("score").loc["bertscore_f1"]
    assert (row["n"], row["errors"]) == (9, 2)  # one record has no score, two failed validation


def test_runs_page_reports_a_corrupt_manifest_and_shows_the_rest(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    run_factory("good.parquet")
    run_factory("bad.parquet")
    (tmp_path / "bad.manifest.json").write_text('{"metrics": [')
    at = open_app(monkeypatch, tmp_path)
    assert "not valid JSON" in texts(at.error)
    assert [header.value for header in at.header] == ["good.parquet"]


def test_a_run_without_manifest_is_shown_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "bare.parquet"
    pl.DataFrame({"id": ["a", "b"], "tox_score": [0.1, 0.3]}).write_parquet(path)
    at = open_app(monkeypatch, path)
    assert "No manifest beside this file" in texts(at.warning)
    assert at.dataframe[1].value["mean"].tolist() == pytest.approx([0.2])


@pytest.mark.parametrize(
    ("paths", "message"),
    [((), "No runs given"), (("{tmp}/missing",), "does not exist"), (("{tmp}",), "no runs found under")],
)
def test_clear_errors_when_there_is_nothing_to_show(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, paths: tuple[str, ...], message: str
) -> None:
    for page in (None, "distributions", "compare", "records"):
        at = open_app(monkeypatch, *(path.format(tmp=tmp_path) for path in paths), page=page)
        assert message in texts(at.error)


# Distributions ----------------------------------------------------------------------------------------------


def test_distributions_page_charts_and_filters(
    monkeypatch: pytest.MonkeyPatch, two_runs: tuple[Path, Path]
) -> None:
    at = open_app(monkeypatch, *two_runs, page="distributions")
    assert at.title[0].value == "Distributions"
    assert chart_count(at) == 11  # one histogram per score column
    assert [sub.value for sub in at.main.subheader][:5] == [
        "bertscore",
        "selfcheck_nli",
        "factuality",
        "semantic_entropy",
        "pii",
    ]
    assert "24 of 24 records" in texts(at.caption)
    assert "↓ lower is better" in texts(at.caption)
    breakdown = at.dataframe[0].value
    assert breakdown["model"].tolist() == ["model-a", "model-b"]

    by_label(at.sidebar.multiselect, "model").select("model-a").run()
    assert "12 of 24 records match the filters" in texts(at.caption)
    assert at.dataframe[0].value["records"].tolist() == [12]

    by_label(at.sidebar.multiselect, "Score ranges on").select("bertscore_f1").run()
    slider = by_label(at.sidebar.slider, "bertscore_f1")
    low, high = slider.value
    slider.set_range(low, (low + high) / 2).run()
    table = pl.read_parquet(two_runs[0])
    expected = table.filter(
        (pl.col("model") == "model-a") & pl.col("bertscore_f1").is_between(low, (low + high) / 2)
    ).height
    assert f"{expected} of 24 records match the filters" in texts(at.caption)
    assert f"{expected} filtered records" in texts(at.sidebar.caption)
    # (That the filters persist on the record explorer is checked in the browser: AppTest does not
    # carry persist_state="session" widget values across a page switch.)


def test_distributions_when_nothing_matches_and_for_an_empty_run(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path]
) -> None:
    at = open_app(monkeypatch, run_factory("a.parquet"), page="distributions")
    by_label(at.sidebar.multiselect, "task").select("qa").run()
    by_label(at.sidebar.multiselect, "model").select("model-b").run()
    assert not at.warning
    by_label(at.sidebar.multiselect, "tags").select("short").run()  # short tags are on model-a rows only
    assert "No record matches the filters." in texts(at.warning)
    assert chart_count(at) == 0

    empty = open_app(monkeypatch, run_factory("empty.parquet", n=0), page="distributions")
    assert "0 of 0 records" in texts(empty.caption)
    assert "No record matches the filters." in texts(empty.warning)


def test_distributions_switch_run(monkeypatch: pytest.MonkeyPatch, two_runs: tuple[Path, Path]) -> None:
    at = open_app(monkeypatch, *two_runs, page="distributions")
    by_label(at.sidebar.selectbox, "Run").select("candidate.parquet").run()
    assert "**candidate.parquet**" in texts(at.caption)


# Compare ----------------------------------------------------------------------------------------------------


def test_compare_page_numbers_warning_scatter_and_worst(
    monkeypatch: pytest.MonkeyPatch, two_runs: tuple[Path, Path]
) -> None:
    a, b = two_runs
    at = open_app(monkeypatch, a, b, page="compare")
    assert at.title[0].value == "Compare two runs"
    warnings = texts(at.warning)
    assert "bertscore: config hash differs" in warnings
    assert "idf False → True" in warnings
    shown = at.dataframe[0].value
    expected = compare(scan_results(a).scores(), scan_results(b).scores()).table
    assert shown["score"].tolist() == expected["score"].to_list()
    for column in ("mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value"):
        assert shown[column].tolist() == pytest.approx(expected[column].to_list()), column
    for column in ("n", "wins", "ties", "losses", "verdict"):
        assert shown[column].tolist() == expected[column].to_list(), column
    assert chart_count(at) == 1  # the scatter of the chosen score
    assert at.metric[0].label == "bertscore_precision (B − A)"
    assert "Got worse the most" in texts(at.subheader)
    worst = at.dataframe[1].value
    assert list(worst.columns) == ["id", "a", "b", "diff", "prediction A", "prediction B"]
    assert (worst["diff"] < 0).all()
    assert worst["diff"].tolist() == sorted(worst["diff"].tolist())

    by_label(at.selectbox, "Score").select("selfcheck_nli_mean").run()
    worst = at.dataframe[1].value
    assert (worst["diff"] > 0).all()  # lower is better: worse means B went up


def test_compare_swapped_and_identical_runs(
    monkeypatch: pytest.MonkeyPatch, two_runs: tuple[Path, Path]
) -> None:
    at = open_app(monkeypatch, *two_runs, page="compare")
    diff = at.dataframe[0].value["diff"].tolist()
    by_label(at.selectbox, "Run A (baseline)").select("candidate.parquet").run()
    by_label(at.selectbox, "Run B (candidate)").select("baseline.parquet").run()
    assert at.dataframe[0].value["diff"].tolist() == pytest.approx([-value for value in diff])
    by_label(at.selectbox, "Run B (candidate)").select("candidate.parquet").run()
    assert "Pick two different runs." in texts(at.warning)


def test_compare_needs_two_runs(monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path]) -> None:
    at = open_app(monkeypatch, run_factory("only.parquet"), page="compare")
    assert "Comparing needs two runs" in texts(at.info)


def test_compare_runs_that_share_nothing(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.parquet"
    pl.DataFrame({"id": ["x"], "tox_score": [0.5]}).write_parquet(other)
    at = open_app(monkeypatch, run_factory("a.parquet"), other, page="compare")
    assert "These runs cannot be compared: runs A and B share no score column" in texts(at.error)


def test_cli_compare_prints_the_dashboard_numbers(
    monkeypatch: pytest.MonkeyPatch, two_runs: tuple[Path, Path]
) -> None:
    a, b = two_runs
    at = open_app(monkeypatch, a, b, page="compare")
    shown = at.dataframe[0].value
    result = CliRunner().invoke(cli_app, ["compare", str(a), str(b), "--worst", "0"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    for row in shown.to_dict("records"):
        line = lines[row["score"]]
        assert f"{row['diff']:+.4f}" in line
        assert f"{row['ci_low']:+.4f} – {row['ci_high']:+.4f}" in line
        assert f"{row['p_value']:.3g}" in line
        assert f"{row['wins']}/{row['ties']}/{row['losses']}" in line
    assert "bertscore: config hash differs" in result.output


# Records ----------------------------------------------------------------------------------------------------


def test_records_page_table_search_and_evidence(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path]
) -> None:
    at = open_app(monkeypatch, run_factory("a.jsonl", n=24), page="records")
    assert at.title[0].value == "Records"
    table = at.dataframe[0].value
    assert len(table) == 24
    assert table.columns[0] == "id"
    assert "factuality_claims" not in table.columns

    by_label(at.sidebar.text_input, "Search id, prompt, prediction").input("spider").run()
    assert "6 of 24 records match the filters and search" in texts(at.caption)
    assert len(at.dataframe[0].value) == 6

    by_label(at.selectbox, "Open record").select("r003").run()
    assert at.header[0].value == "Record r003"
    page = texts(at.markdown)
    assert "**model** model-b" in page
    assert ">jane.doe@example.com</mark>" in page  # PII span highlighted
    assert "meaning 1</b> · 2 of 4 samples" in page  # semantic clusters
    assert "A spider has eight legs.</mark>" in page  # SelfCheck sentence and factuality claim
    assert "supported by (P(entail)" in page
    assert [sub.value for sub in at.main.subheader] == [
        "bertscore",
        "selfcheck_nli",
        "factuality",
        "semantic_entropy",
        "pii",
    ]
    assert any(button.label == "Show token alignment" for button in at.button)
    assert "Every spider has eight legs." in texts(at.text)  # the source, in full
    assert '"id": "r003"' in texts(at.code)


def test_records_sorting_and_pagination(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path]
) -> None:
    path = run_factory("big.parquet", n=60)
    at = open_app(monkeypatch, path, page="records")
    assert len(at.dataframe[0].value) == 25
    assert "Page 1 of 3 · rows 1–25" in texts(at.caption)
    by_label(at.selectbox, "Sort by").select("bertscore_f1").run()
    at.segmented_control[0].set_value("descending").run()
    shown = at.dataframe[0].value["bertscore_f1"].tolist()
    expected = pl.read_parquet(path)["bertscore_f1"].sort(descending=True).to_list()
    assert shown == pytest.approx(expected[:25])
    at.get("pagination")[0].set_value(3).run()
    assert "Page 3 of 3 · rows 51–60" in texts(at.caption)
    assert at.dataframe[0].value["bertscore_f1"].tolist() == pytest.approx(expected[50:])
    by_label(at.selectbox, "Per page").select(100).run()
    assert "Page 1 of 1 · rows 1–60" in texts(at.caption)


def test_records_page_for_an_empty_run(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path]
) -> None:
    at = open_app(monkeypatch, run_factory("empty.parquet", n=0), page="records")
    assert "This run has no records." in texts(at.warning)


@pytest.mark.model
def test_records_bertscore_alignment_through_the_runtime(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path]
) -> None:
    at = open_app(monkeypatch, run_factory("a.parquet", n=4), page="records")
    by_label(at.button, "Show token alignment").click().run(timeout=180)
    assert not at.exception
    assert chart_count(at) == 1
    caption = texts(at.caption)
    assert "Cosine similarity of each prediction token" in caption
    assert "without idf or rescaling" in caption


def test_open_more_runs_from_the_sidebar(
    monkeypatch: pytest.MonkeyPatch, run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    first = run_factory("first.parquet")
    extra = tmp_path / "extra"
    extra.mkdir()
    run_factory("extra/second.parquet")
    at = open_app(monkeypatch, first)
    assert [header.value for header in at.header] == ["first.parquet"]
    by_label(at.sidebar.text_input, "Result file or directory").input(str(tmp_path / "nowhere"))
    at.sidebar.button[0].click().run()
    assert "does not exist" in texts(at.sidebar.error)
    by_label(at.sidebar.text_input, "Result file or directory").input(str(extra))
    at.sidebar.button[0].click().run()
    assert [header.value for header in at.header] == ["first.parquet", "second.parquet"]
