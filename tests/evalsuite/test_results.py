"""Tests of evalsuite.results: summary statistics, thresholds, file round-trips."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import polars as pl
import pytest

from evalsuite.errors import ConfigError, ThresholdError
from evalsuite.results import (
    Results,
    UnknownColumnError,
    bootstrap_ci,
    manifest_path,
    read_manifest,
    summarize,
    write_manifest,
)
from evalsuite.testing import float_tolerance


def _table(n: int = 40, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    f1 = rng.uniform(0.6, 1.0, n).tolist()
    f1[3] = None  # an errored record
    return pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "prompt": [f"question {i}" for i in range(n)],
            "prediction": [f'answer, with "quotes"\nand a newline {i}' for i in range(n)],
            "references": [[f"ref {i}", "other ref"] if i % 2 else [] for i in range(n)],
            "metadata": [{"split": "dev", "turn": i} for i in range(n)],
            "bertscore_f1": f1,
            "toxicity_score": rng.uniform(0.0, 0.1, n).tolist(),
        },
        schema_overrides={"bertscore_f1": pl.Float64},
    )


SCORES = ["bertscore_f1", "toxicity_score"]


@pytest.fixture
def results() -> Results:
    return Results(
        _table(),
        score_columns=SCORES,
        higher_is_better={"toxicity_score": False},
        errors=[{"location": "line 5", "field": "prediction", "reason": "missing"}],
        manifest={"evalsuite": "0.1.0", "metrics": {"bertscore": {"model": "minilm"}, "toxicity": {}}},
    )


# bootstrap_ci ---------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_mean_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(0.5, 0.1, 30)
    large = rng.normal(0.5, 0.1, 3000)
    low_s, high_s = bootstrap_ci(small)
    low_l, high_l = bootstrap_ci(large)
    assert low_s < small.mean() < high_s
    assert low_l < large.mean() < high_l
    assert (high_l - low_l) < (high_s - low_s) / 5


def test_bootstrap_ci_is_seeded_and_wider_at_higher_confidence() -> None:
    values = np.random.default_rng(3).uniform(size=50)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    low90, high90 = bootstrap_ci(values, confidence=0.90)
    low99, high99 = bootstrap_ci(values, confidence=0.99)
    assert low99 < low90 < high90 < high99


@pytest.mark.parametrize("size", [2, 3, 17, 1000, 6000])
@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.999])
def test_bootstrap_ci_is_scipys_percentile_bootstrap(size: int, confidence: float) -> None:
    import scipy.stats

    import evalsuite.results.stats as stats

    values = np.random.default_rng(size).normal(size=size)
    reference = scipy.stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=2000,
        batch=max(1, stats._BOOTSTRAP_CHUNK_VALUES // size),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    tolerance = float_tolerance("float64", style="approx")
    assert bootstrap_ci(values, confidence=confidence) == pytest.approx(
        (reference.low, reference.high), **tolerance
    )


def test_bootstrap_ci_in_chunks_is_scipys_with_the_same_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import scipy.stats

    import evalsuite.results.stats as stats

    monkeypatch.setattr(stats, "_BOOTSTRAP_CHUNK_VALUES", 1000)  # 2000 resamples of 300 in batches of 3
    values = np.random.default_rng(5).uniform(size=300)
    reference = scipy.stats.bootstrap(
        (values,), np.mean, n_resamples=2000, batch=3, vectorized=True, method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval  # fmt: skip
    assert bootstrap_ci(values) == pytest.approx(
        (reference.low, reference.high), **float_tolerance("float64", style="approx")
    )


def test_bootstrap_ci_degenerate_inputs() -> None:
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([])))
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([np.nan, np.nan])))
    assert bootstrap_ci(np.array([0.4])) == (0.4, 0.4)
    assert bootstrap_ci(np.array([0.7, 0.7, np.nan, 0.7])) == (0.7, 0.7)


def test_bootstrap_ci_drops_nans() -> None:
    values = np.array([0.1, 0.5, 0.9, 0.3, 0.6])
    with_nan = np.concatenate([values, [np.nan, np.nan]])
    assert bootstrap_ci(with_nan) == bootstrap_ci(values)


def test_bootstrap_ci_rejects_bad_confidence() -> None:
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_ci(np.array([1.0, 2.0]), confidence=95)


# summarize ------------------------------------------------------------------------------------------


def test_summary_matches_numpy(results: Results) -> None:
    summary = results.summary()
    assert summary.columns == ["score", "mean", "std", "ci_low", "ci_high", "n", "errors"]
    assert summary["score"].to_list() == SCORES
    for row in summary.iter_rows(named=True):
        values = np.array([v for v in results.table[row["score"]].to_list() if v is not None])
        assert row["n"] == values.size
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
        assert row["ci_low"] < row["mean"] < row["ci_high"]
        assert row["errors"] == 1
    assert summary.row(0, named=True)["n"] == 39  # the null is not counted


def test_summary_ignores_nulls_and_nans() -> None:
    table = pl.DataFrame({"m_s": [1.0, None, 3.0, float("nan"), 5.0]})
    row = summarize(table, ["m_s"]).row(0, named=True)
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(3.0)
    assert row["std"] == pytest.approx(2.0)


def test_summary_constant_single_and_empty_columns() -> None:
    table = pl.DataFrame(
        {"m_const": [0.5, 0.5, 0.5], "m_one": [None, 0.2, None], "m_none": [None, None, None]},
        schema={"m_const": pl.Float64, "m_one": pl.Float64, "m_none": pl.Float64},
    )
    rows = {row["score"]: row for row in summarize(table, table.columns).iter_rows(named=True)}
    assert rows["m_const"] | {"score": None} == {
        "score": None,
        "mean": 0.5,
        "std": 0.0,
        "ci_low": 0.5,
        "ci_high": 0.5,
        "n": 3,
        "errors": 0,
    }
    assert rows["m_one"]["mean"] == 0.2
    assert rows["m_one"]["std"] is None
    assert (rows["m_one"]["ci_low"], rows["m_one"]["ci_high"]) == (0.2, 0.2)
    assert rows["m_none"]["n"] == 0
    assert rows["m_none"]["mean"] is None
    assert rows["m_none"]["ci_low"] is None


def test_summary_of_empty_table() -> None:
    table = pl.DataFrame(schema={"id": pl.String, "m_s": pl.Float64})
    summary = summarize(table, ["m_s"], errors=4)
    assert summary.row(0, named=True) == {
        "score": "m_s",
        "mean": None,
        "std": None,
        "ci_low": None,
        "ci_high": None,
        "n": 0,
        "errors": 4,
    }
    assert summarize(table, []).columns == ["score", "mean", "std", "ci_low", "ci_high", "n", "errors"]


def test_summarize_lazy_frame_reads_only_score_columns(tmp_path: pathlib.Path) -> None:
    table = _table()
    path = tmp_path / "big.parquet"
    table.write_parquet(path)
    assert summarize(pl.scan_parquet(path), SCORES).equals(summarize(table, SCORES))

    def fail_if_loaded(texts: pl.Series) -> pl.Series:
        raise AssertionError("a text column was loaded")

    lazy = pl.scan_parquet(path).with_columns(
        pl.col("prediction").map_batches(fail_if_loaded, return_dtype=pl.String)
    )
    assert summarize(lazy, SCORES).equals(summarize(table, SCORES))


def test_summary_is_recomputed_when_the_table_changes(results: Results) -> None:
    first = results.summary()
    assert results.summary() is first
    results.table = results.table.with_columns(pl.col("bertscore_f1") * 0.5)
    assert results.summary()["mean"][0] == pytest.approx(first["mean"][0] * 0.5)
    assert results.summary(confidence=0.9)["ci_low"][0] > results.summary()["ci_low"][0]


def test_summarize_unknown_column() -> None:
    with pytest.raises(UnknownColumnError, match=r"'m_x'.*available: 'm_s'"):
        summarize(pl.DataFrame({"m_s": [1.0]}), ["m_x"])


# Results --------------------------------------------------------------------------------------------


def test_results_accessors(results: Results) -> None:
    assert len(results) == 40
    assert results["bertscore_f1"].null_count() == 1
    assert results.mean("toxicity_score") == pytest.approx(results.table["toxicity_score"].mean())
    with pytest.raises(KeyError, match="nope"):
        results["nope"]
    with pytest.raises(ConfigError, match="score column 'nope'"):
        Results(_table(), score_columns=["nope"])
    text = repr(results)
    assert text.startswith("Results(40 records, 1 errors)")
    assert "bertscore_f1" in text
    assert "n=39" in text


def test_thresholds_pass(results: Results) -> None:
    assert results.check_thresholds({"bertscore_f1": 0.5, "toxicity_score": 0.2}) == []
    results.assert_thresholds({"bertscore_f1": 0.5})  # returns without raising


def test_thresholds_fail_lists_every_failing_column(results: Results) -> None:
    thresholds = {"bertscore_f1": 0.99, "toxicity_score": 0.001}
    failures = results.check_thresholds(thresholds)
    assert len(failures) == 2
    mean = results.mean("bertscore_f1")
    assert failures[0].startswith(f"bertscore_f1: mean {mean:.3g} (95% CI ")
    assert failures[0].endswith(", n=39) is below the threshold 0.99")
    assert failures[1].startswith("toxicity_score: mean ")
    assert failures[1].endswith(", n=40) is above the threshold 0.001")
    with pytest.raises(ThresholdError) as raised:
        results.assert_thresholds(thresholds)
    assert failures[0] in str(raised.value)
    assert failures[1] in str(raised.value)


def test_thresholds_lower_is_better() -> None:
    res = Results(
        pl.DataFrame({"tox_score": [0.1, 0.3]}),
        score_columns=["tox_score"],
        higher_is_better={"tox_score": False},
    )
    res.assert_thresholds({"tox_score": 0.2})  # mean 0.2 <= 0.2
    with pytest.raises(ThresholdError, match=r"tox_score: mean 0.2 .* is above the threshold 0.15"):
        res.assert_thresholds({"tox_score": 0.15})


def test_threshold_message_shows_digits_that_differ() -> None:
    res = Results(pl.DataFrame({"m_s": [0.8499, 0.8499]}), score_columns=["m_s"])
    (failure,) = res.check_thresholds({"m_s": 0.85})
    assert "mean 0.8499 " in failure


def test_thresholds_unknown_column_and_no_scores(results: Results) -> None:
    with pytest.raises(ConfigError, match=r"'bertscore_f2'.*available: 'bertscore_f1', 'toxicity_score'"):
        results.assert_thresholds({"bertscore_f2": 0.5})
    empty = Results(pl.DataFrame({"m_s": [None]}, schema={"m_s": pl.Float64}), score_columns=["m_s"])
    with pytest.raises(ThresholdError, match="no scored records"):
        empty.assert_thresholds({"m_s": 0.1})


# Writing and reading ---------------------------------------------------------------------------------


def test_manifest_path() -> None:
    assert manifest_path("out/run.parquet") == pathlib.Path("out/run.manifest.json")
    assert manifest_path("run.v2.jsonl") == pathlib.Path("run.v2.manifest.json")
    assert manifest_path("run.jsonl.gz") == pathlib.Path("run.manifest.json")
    assert manifest_path("run.manifest.json") == pathlib.Path("run.manifest.json")


def test_write_manifest_is_sorted_indented_and_atomic(tmp_path: pathlib.Path) -> None:
    target = write_manifest(tmp_path / "run.parquet", {"b": 1, "a": {"d": pathlib.Path("x"), "c": 2}})
    assert target == tmp_path / "run.manifest.json"
    text = target.read_text()
    assert text == json.dumps({"a": {"c": 2, "d": "x"}, "b": 1}, indent=2, sort_keys=True) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.manifest.json"]  # no temporary file left
    assert read_manifest(tmp_path / "run.parquet") == {"a": {"c": 2, "d": "x"}, "b": 1}


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_write_read_round_trip(results: Results, tmp_path: pathlib.Path, suffix: str) -> None:
    path = tmp_path / "out" / f"run{suffix}"
    assert results.write(path) == path
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["score_columns"] == SCORES
    assert manifest["evalsuite"] == "0.1.0"
    assert [row["score"] for row in manifest["summary"]] == SCORES
    assert manifest["summary"][0]["n"] == 39

    back = Results.read(path)
    assert back.score_columns == SCORES
    assert back.higher_is_better == {"toxicity_score": False}
    assert back.errors == results.errors
    assert back.manifest["metrics"] == results.manifest["metrics"]
    assert back.table.columns == results.table.columns
    assert back["references"].to_list() == results["references"].to_list()
    assert back["metadata"].to_list() == results["metadata"].to_list()
    assert back["prediction"].to_list() == results["prediction"].to_list()
    assert back.table.select(SCORES).equals(results.table.select(SCORES))
    assert back.summary().equals(results.summary())


def test_convenience_writers(results: Results, tmp_path: pathlib.Path) -> None:
    assert results.to_parquet(tmp_path / "a.parquet").is_file()
    assert results.to_jsonl(tmp_path / "a.jsonl").is_file()
    assert results.to_csv(tmp_path / "a.csv").is_file()
    with pytest.raises(ConfigError, match=r"\.csv"):
        results.to_csv(tmp_path / "a.parquet")
    with pytest.raises(ConfigError, match="must end in one of"):
        results.write(tmp_path / "a.xlsx")


def test_read_all_null_score_column_from_jsonl(tmp_path: pathlib.Path) -> None:
    table = pl.DataFrame({"id": ["a", "b"], "m_s": [None, None]}, schema={"id": pl.String, "m_s": pl.Float64})
    path = Results(table, score_columns=["m_s"]).write(tmp_path / "run.jsonl")
    back = Results.read(path)
    assert back.table.schema["m_s"] == pl.Float64
    assert back.summary()["n"].to_list() == [0]


def test_read_without_score_columns_uses_metric_prefixes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cli.parquet"
    pl.DataFrame({"id": ["a"], "bertscore_f1": [0.9], "bertscore_p": [0.8], "latency": [1.5]}).write_parquet(
        path
    )
    write_manifest(path, {"metrics": [{"name": "bertscore"}]})
    assert Results.read(path).score_columns == ["bertscore_f1", "bertscore_p"]


def test_read_takes_directions_from_a_cli_manifest(tmp_path: pathlib.Path) -> None:
    # The CLI's manifest gives each metric's direction, not each column's: thresholds must still
    # treat a lower-is-better score as such after reading the file back.
    path = tmp_path / "cli.parquet"
    pl.DataFrame({"id": ["a", "b"], "pii_total": [0.0, 2.0], "bertscore_f1": [0.9, 0.8]}).write_parquet(path)
    write_manifest(
        path,
        {
            "score_columns": ["pii_total", "bertscore_f1"],
            "metrics": [
                {"name": "pii", "columns": ["pii_total"], "higher_is_better": False},
                {"name": "bertscore", "columns": ["bertscore_f1"], "higher_is_better": True},
            ],
        },
    )
    back = Results.read(path)
    assert back.higher_is_better == {"pii_total": False, "bertscore_f1": True}
    with pytest.raises(ThresholdError, match="pii_total"):
        back.assert_thresholds({"pii_total": 0.5})
    back.assert_thresholds({"pii_total": 1.5, "bertscore_f1": 0.8})


def test_read_without_manifest(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bare.csv"
    pl.DataFrame(
        {
            "id": ["a", "b"],
            "references": ['["x", "y"]', None],
            "metadata": ["plain text", "{}"],  # not all JSON mappings: left as text
            "m_s": [0.5, None],
        }
    ).write_csv(path)
    (tmp_path / "bare.errors.jsonl").write_text('{"location": "line 3", "reason": "empty"}\n')
    back = Results.read(path)
    assert back.score_columns == ["m_s"]
    assert back["references"].to_list() == [["x", "y"], None]
    assert back["metadata"].to_list() == ["plain text", "{}"]
    assert back.errors == [{"location": "line 3", "reason": "empty"}]
    assert back.summary()["errors"].to_list() == [1]
    assert back.manifest == {}
    with pytest.raises(ConfigError, match="does not exist"):
        Results.read(tmp_path / "missing.parquet")


def test_csv_round_trip_keeps_empty_strings_and_unicode(tmp_path: pathlib.Path) -> None:
    table = pl.DataFrame(
        {"id": ["a", "b"], "prediction": ["", 'héllo, "wörld"'], "references": [["ü"], []], "m_s": [1.0, 2.0]}
    )
    back = Results.read(Results(table, score_columns=["m_s"]).write(tmp_path / "run.csv"))
    assert back["prediction"].to_list() == ["", 'héllo, "wörld"']
    assert back["references"].to_list() == [["ü"], []]
