"""dashboards.data: finding runs, filters, pages, histograms and exports, without Streamlit."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from dashboards import data
from evalsuite.errors import ConfigError
from evalsuite.results import Results, histogram


def test_discover_files_directories_and_manifests(run_factory: Callable[..., Path], tmp_path: Path) -> None:
    a = run_factory("a.parquet")
    nested = tmp_path / "nested" / "deep"
    nested.mkdir(parents=True)
    b = nested / "b.jsonl"
    b.write_bytes(run_factory("b.jsonl").read_bytes())
    (nested / "b.manifest.json").write_bytes((tmp_path / "b.manifest.json").read_bytes())
    (nested / "input.jsonl").write_text('{"prediction": "no manifest: an input, not a run"}\n')
    (nested / "b.errors.jsonl").write_text("{}\n")
    assert data.discover([a]) == [a.resolve()]
    assert data.discover([tmp_path / "nested"]) == [b.resolve()]
    assert data.discover([tmp_path / "a.manifest.json"]) == [a.resolve()]
    assert data.discover([a, a, tmp_path / "nested"]) == [a.resolve(), b.resolve()]


def test_discover_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        data.discover([tmp_path / "missing"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a result file"):
        data.discover([tmp_path / "notes.txt"])
    with pytest.raises(ConfigError, match="no runs found under"):
        data.discover([tmp_path])


def test_paths_from_environment() -> None:
    joined = os.pathsep.join(["a", "b"])
    assert data.paths_from_environment([], {data.PATHS_ENV: joined}) == ["a", "b"]
    assert data.paths_from_environment(["x"], {data.PATHS_ENV: joined}) == ["x"]
    assert data.paths_from_environment([], {}) == []


def test_unique_labels() -> None:
    paths = [Path("/r/one/scores.jsonl"), Path("/r/two/scores.jsonl"), Path("/r/two/other.parquet")]
    assert data.unique_labels(paths) == {
        paths[0]: "one/scores.jsonl",
        paths[1]: "two/scores.jsonl",
        paths[2]: "other.parquet",
    }


def test_load_runs_reports_a_corrupt_manifest_and_keeps_the_others(
    run_factory: Callable[..., Path], tmp_path: Path
) -> None:
    run_factory("good.parquet")
    run_factory("bad.parquet")
    (tmp_path / "bad.manifest.json").write_text("{ truncated")
    runs, problems = data.load_runs([tmp_path])
    assert [run.label for run in runs] == ["good.parquet"]
    assert len(problems) == 1
    assert problems[0].path.name == "bad.parquet"
    assert "not valid JSON" in problems[0].message


def test_open_run_roles(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.parquet"))
    assert run.metadata_columns == ["model", "task", "tags"]
    assert run.text_columns == ["prompt", "source", "prediction", "references", "samples"]
    metrics = {metric.name: metric for metric in run.metrics}
    assert metrics["bertscore"].columns == ("bertscore_precision", "bertscore_recall", "bertscore_f1")
    assert metrics["selfcheck_nli"].detail_columns == ("selfcheck_nli_sentences",)
    assert metrics["selfcheck_nli"].higher_is_better is False
    assert metrics["bertscore"].config["idf"] is False
    assert run.higher_is_better("pii_total") is False


def test_open_run_without_manifest_groups_columns_by_prefix(tmp_path: Path) -> None:
    path = tmp_path / "bare.parquet"
    pl.DataFrame({"id": ["a"], "tox_score": [0.1], "sim_cosine": [0.9], "lang": ["en"]}).write_parquet(path)
    run = data.open_run(path)
    assert not run.has_manifest
    assert [(m.name, m.columns) for m in run.metrics] == [("tox", ("tox_score",)), ("sim", ("sim_cosine",))]
    assert run.metadata_columns == ["lang"]


def test_filters_categories_lists_ranges_and_search(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.parquet", n=24))
    table = run.table.collect()
    by_model = data.filtered(run, data.Filters(categories={"model": ["model-a"]})).collect()
    assert by_model.height == 12
    assert set(by_model["model"]) == {"model-a"}
    tagged = data.filtered(run, data.Filters(categories={"tags": ["hard"]})).collect()
    assert tagged.height == sum("hard" in tags for tags in table["tags"].to_list())
    low, high = 0.7, 0.9
    ranged = data.filtered(run, data.Filters(ranges={"bertscore_f1": (low, high)})).collect()
    assert ranged.height == table.filter(pl.col("bertscore_f1").is_between(low, high)).height
    searched = data.filtered(run, data.Filters(search="  SPIDER ")).collect()
    assert searched.height == 6
    assert all("spider" in p.lower() for p in searched["prompt"])
    assert data.filtered(run, data.Filters(search="r00")).collect().height == 10  # ids r000..r009
    both = data.Filters(
        categories={"model": ["model-a"], "task": ["qa"]}, ranges={"bertscore_f1": (0.0, 1.0)}
    )
    assert (
        data.count(data.filtered(run, both))
        == table.filter((pl.col("model") == "model-a") & (pl.col("task") == "qa")).height
    )
    assert not data.Filters().active
    assert data.filtered(run, data.Filters()) is run.table
    with pytest.raises(ConfigError, match="no such column"):
        data.Filters(categories={"nope": ["x"]}).expression(run.table.collect_schema())


def test_a_range_filter_drops_records_without_the_score(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("e.parquet", n=10, errors=1))  # r001 has no bertscore_f1
    kept = data.filtered(run, data.Filters(ranges={"bertscore_f1": (-10.0, 10.0)})).collect()
    assert "r001" not in kept["id"].to_list()
    assert kept.height == 9


def test_category_values_and_bounds(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.parquet", n=24))
    values = data.category_values(run)
    assert values == {
        "model": ["model-a", "model-b"],
        "task": ["qa", "rag", "summary"],
        "tags": ["hard", "numeric", "short"],
    }
    assert data.category_values(run, limit=2) == {"model": ["model-a", "model-b"]}
    bounds = data.score_bounds(run)
    table = run.table.collect()
    assert bounds["bertscore_f1"] == (table["bertscore_f1"].min(), table["bertscore_f1"].max())


def test_page_sorting_and_bounds(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.parquet", n=24, errors=1))
    first = data.page(
        run.table,
        page_number=1,
        page_size=10,
        sort_by="bertscore_f1",
        descending=True,
        columns=["id", "bertscore_f1"],
    )
    assert first.columns == ["id", "bertscore_f1"]
    assert first.height == 10
    assert first["bertscore_f1"].to_list() == sorted(first["bertscore_f1"].to_list(), reverse=True)
    last = data.page(run.table, page_number=3, page_size=10, sort_by="bertscore_f1")
    assert last.height == 4
    assert last["bertscore_f1"][-1] is None
    assert data.page_count(24, 10) == 3
    assert data.page_count(0, 10) == 1
    with pytest.raises(ConfigError, match="page_number"):
        data.page(run.table, page_number=0, page_size=10)


def test_record_lookup(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.jsonl", n=8))
    found = data.record(run, "r003")
    assert found is not None
    assert found["pii_spans"][0]["type"] == "email"
    assert found["factuality_claims"][0]["support"]
    assert data.record(run, "missing") is None


def test_histogram_counts_every_value_once(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.parquet", n=24))
    counts = histogram(run.table, "bertscore_f1", bins=7)
    assert counts.height == 7
    assert counts["count"].sum() == 24
    assert counts["start"][0] == pytest.approx(run.table.collect()["bertscore_f1"].min())
    constant = histogram(run.table, "semantic_entropy_clusters", bins=10)
    assert constant.height == 1
    assert constant["count"][0] == 24
    bounded = histogram(run.table, "bertscore_f1", bins=4, bounds=(0.0, 0.7))
    assert bounded["count"].sum() == run.table.filter(pl.col("bertscore_f1") <= 0.7).collect().height
    empty = histogram(run.table.filter(pl.lit(False)), "bertscore_f1")
    assert empty.height == 0


def test_describe_and_breakdown(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.parquet", n=24))
    stats = data.describe_scores(run.table, ["bertscore_f1"]).row(0, named=True)
    f1 = run.table.collect()["bertscore_f1"]
    assert stats["n"] == 24
    assert stats["mean"] == pytest.approx(f1.mean())
    assert stats["median"] == pytest.approx(f1.median())
    by_model = data.breakdown(run.table, "model", ["bertscore_f1"])
    assert by_model["model"].to_list() == ["model-a", "model-b"]
    assert by_model["records"].sum() == 24
    by_tag = data.breakdown(run.table, "tags", ["bertscore_f1"])
    assert set(by_tag["tags"].drop_nulls()) == {"hard", "numeric", "short"}


def test_export_csv_and_parquet_round_trip(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.parquet", n=24))
    lazy = data.filtered(run, data.Filters(categories={"model": ["model-b"]}))
    parquet = pl.read_parquet(io.BytesIO(data.export_bytes(lazy, "parquet")))
    assert parquet.height == 12
    assert parquet.equals(lazy.collect())
    csv = pl.read_csv(io.BytesIO(data.export_bytes(lazy, "csv")))
    assert csv.height == 12
    assert json.loads(csv["factuality_claims"][0]) == lazy.collect()["factuality_claims"][0].to_list()
    with pytest.raises(ConfigError, match="export format"):
        data.export_bytes(lazy, "xlsx")  # type: ignore[arg-type]


def test_display_columns_leave_out_evidence(run_factory: Callable[..., Path]) -> None:
    run = data.open_run(run_factory("a.parquet"))
    shown = data.display_columns(run)
    assert shown[:3] == ["id", "model", "task"]
    assert shown[-2:] == ["prediction", "prompt"]
    assert "factuality_claims" not in shown
    assert "tags" not in shown


def test_an_empty_run_opens(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    Results(pl.DataFrame(schema={"id": pl.String, "m_s": pl.Float64}), score_columns=["m_s"]).write(path)
    run = data.open_run(path)
    assert data.count(run.table) == 0
    assert data.score_bounds(run) == {}
    assert data.category_values(run) == {}
    assert data.page(run.table, page_number=1, page_size=5).height == 0


def test_evidence_columns_without_a_manifest_list_are_found_by_name(tmp_path: Path) -> None:
    path = tmp_path / "old.parquet"
    pl.DataFrame(
        {
            "id": ["a"],
            "pii_total": [1.0],
            "pii_spans": [[{"type": "email", "start": 0, "end": 1}]],
            "lang": ["en"],
        }
    ).write_parquet(path)
    Results.read(path)  # readable as it is
    (tmp_path / "old.manifest.json").write_text(
        json.dumps({"metrics": {"pii": {}}, "score_columns": ["pii_total"]})
    )
    run = data.open_run(path)
    assert run.metrics[0].detail_columns == ("pii_spans",)
    assert run.metadata_columns == ["lang"]
