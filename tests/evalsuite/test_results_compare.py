"""Comparing two runs (evalsuite.results.compare), lazy reading (scan_results) and manifest helpers."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import polars as pl
import pytest
import scipy.stats

from evalsuite.errors import ConfigError
from evalsuite.results import (
    Results,
    bootstrap_ci,
    compare,
    config_differences,
    higher_is_better_of,
    metric_entries,
    metric_of_column,
    paired_test,
    scan_results,
    write_manifest,
)


def _run(values: dict[str, list[float | None]], ids: list[str] | None = None, **options: object) -> Results:
    n = len(next(iter(values.values())))
    table = pl.DataFrame({"id": ids or [f"r{i}" for i in range(n)], **values}, strict=False)
    table = table.with_columns(pl.col(list(values)).cast(pl.Float64))
    return Results(table, score_columns=list(values), **options)  # type: ignore[arg-type]


def test_compare_matches_a_direct_paired_computation() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 0.9, 60)
    b = a + rng.normal(0.03, 0.05, 60)
    comparison = compare(_run({"m_s": a.tolist()}), _run({"m_s": b.tolist()}))
    row = comparison.table.row(0, named=True)
    differences = b - a
    assert row["n"] == 60
    assert row["mean_a"] == pytest.approx(a.mean())
    assert row["mean_b"] == pytest.approx(b.mean())
    assert row["diff"] == pytest.approx(differences.mean())
    assert (row["ci_low"], row["ci_high"]) == bootstrap_ci(differences)  # paired bootstrap, seed 0
    assert row["ci_low"] < row["diff"] < row["ci_high"]
    assert row["p_value"] == pytest.approx(scipy.stats.wilcoxon(differences).pvalue)
    assert row["wins"] == int((differences > 0).sum())
    assert row["wins"] + row["ties"] + row["losses"] == 60
    assert row["verdict"] == "better"


def test_compare_is_seeded_and_the_seed_matters() -> None:
    rng = np.random.default_rng(4)
    a, b = _run({"m_s": rng.random(30).tolist()}), _run({"m_s": rng.random(30).tolist()})
    first, again = compare(a, b).table, compare(a, b).table
    assert first.equals(again)
    other = compare(a, b, seed=1).table
    assert other["ci_low"][0] != first["ci_low"][0]


def test_lower_is_better_flips_wins_and_verdict() -> None:
    a = _run({"tox_p": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}, higher_is_better={"tox_p": False})
    b = _run({"tox_p": [0.6, 0.7, 0.6, 0.8, 0.7, 0.5]}, higher_is_better={"tox_p": False})
    row = compare(a, b).table.row(0, named=True)
    assert row["higher_is_better"] is False
    assert (row["wins"], row["ties"], row["losses"]) == (0, 1, 5)
    assert row["verdict"] == "worse"
    changes = compare(a, b).changes("tox_p")
    assert changes["improvement"].to_list()[0] == pytest.approx(-0.3)  # worst first
    assert compare(a, b).any_worse()


def test_direction_comes_from_the_manifest_of_a_cli_run() -> None:
    # `evalsuite score` records the direction per metric, not per column.
    manifest = {"metrics": [{"name": "pii", "columns": ["pii_total"], "higher_is_better": False}]}
    a = _run({"pii_total": [0.0, 1.0, 0.0]}, manifest=manifest)
    b = _run({"pii_total": [1.0, 1.0, 2.0]}, manifest=manifest)
    assert compare(a, b).table["losses"][0] == 2


def test_compare_pairs_on_id_and_reports_unpaired_records() -> None:
    a = _run({"m_s": [0.1, 0.2, 0.3]}, ids=["x", "y", "z"])
    b = _run({"m_s": [0.25, 0.15, 0.4]}, ids=["y", "x", "w"])
    comparison = compare(a, b)
    assert comparison.table["n"][0] == 2
    assert comparison.table["diff"][0] == pytest.approx(((0.15 - 0.1) + (0.25 - 0.2)) / 2)
    assert (comparison.only_in_a, comparison.only_in_b) == (1, 1)
    assert any("only in run A" in line for line in comparison.warnings)


def test_integer_and_string_ids_pair() -> None:
    a = Results(pl.DataFrame({"id": [0, 1], "m_s": [0.1, 0.2]}), score_columns=["m_s"])
    b = Results(pl.DataFrame({"id": ["0", "1"], "m_s": [0.2, 0.3]}), score_columns=["m_s"])
    assert compare(a, b).table["n"][0] == 2


def test_missing_scores_are_left_out_of_the_pairs() -> None:
    a = _run({"m_s": [0.1, None, 0.3, float("nan")]})
    b = _run({"m_s": [0.2, 0.5, None, 0.4]})
    row = compare(a, b).table.row(0, named=True)
    assert row["n"] == 1
    assert row["diff"] == pytest.approx(0.1)


def test_identical_runs_and_no_pairs() -> None:
    a = _run({"m_s": [0.1, 0.2, 0.3]})
    row = compare(a, a).table.row(0, named=True)
    assert (row["diff"], row["ci_low"], row["ci_high"], row["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    assert (row["ties"], row["verdict"]) == (3, "not significant")
    # No id in common: nothing to pair is an error naming examples of both sides' ids, not a table of blanks.
    nobody = _run({"m_s": [0.5]}, ids=["other"])
    with pytest.raises(
        ConfigError, match=r"no record id in common \(A has 3 records, e.g. 'r0', 'r1', 'r2'; B has 1"
    ):
        compare(a, nobody)


def test_tie_tolerance() -> None:
    a = _run({"m_s": [0.5, 0.5, 0.5]})
    b = _run({"m_s": [0.5 + 1e-12, 0.6, 0.4]})
    assert compare(a, b).table["ties"][0] == 0
    assert compare(a, b, tie_tolerance=1e-9).table["ties"][0] == 1
    with pytest.raises(ConfigError, match="tie_tolerance"):
        compare(a, b, tie_tolerance=-1)


def test_compare_usage_errors() -> None:
    a = _run({"m_s": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="share no score column"):
        compare(a, _run({"x_y": [0.1, 0.2]}))
    with pytest.raises(ConfigError, match="duplicated id"):
        compare(a, _run({"m_s": [0.1, 0.2]}, ids=["r0", "r0"]))
    with pytest.raises(ConfigError, match="unknown score column of run B"):
        compare(a, _run({"n_t": [0.1, 0.2]}), score_columns=["m_s"])
    no_ids = Results(pl.DataFrame({"m_s": [0.1]}), score_columns=["m_s"])
    with pytest.raises(ConfigError, match="no 'id' column"):
        compare(no_ids, a)


def test_results_compare_method_delegates() -> None:
    a, b = _run({"m_s": [0.1, 0.2, 0.4]}), _run({"m_s": [0.2, 0.2, 0.5]})
    assert a.compare(b, seed=3).table.equals(compare(a, b, seed=3).table)


def test_paired_test_exact_and_approximate() -> None:
    small = np.array([0.1, -0.2, 0.3, 0.05, 0.4])
    assert paired_test(small) == pytest.approx(scipy.stats.wilcoxon(small, method="exact").pvalue)
    rng = np.random.default_rng(0)
    large = rng.normal(0.01, 0.1, 500)
    assert paired_test(large) == pytest.approx(scipy.stats.wilcoxon(large, method="approx").pvalue)
    assert paired_test(np.array([0.0, 0.0, np.nan])) == 1.0
    tied = np.array([0.1, 0.1, -0.1, 0.0])  # tied magnitudes and a zero: approximation, no warning
    assert 0.0 < paired_test(tied) <= 1.0


def test_config_differences() -> None:
    def manifest(idf: bool, weights: str = "aaa", state: str = "") -> dict[str, object]:
        return {
            "metrics": [
                {"name": "bertscore", "config": {"idf": idf}, "config_hash": f"h{idf}", "state_hash": state},
                {"name": "pii", "config": {}, "config_hash": "p"},
            ],
            "models": {"minilm": {"weights_sha256": weights}},
        }

    assert config_differences(manifest(False), manifest(False)) == []
    lines = config_differences(manifest(False), manifest(True, weights="bbb", state="s"))
    assert lines[0] == "bertscore: config hash differs (A hFalse, B hTrue): idf False → True"
    assert "fitted corpus statistics" in lines[1]
    assert lines[2].startswith("model minilm: weights differ")
    only = config_differences({"metrics": {"toxicity": {}}}, {"metrics": {"pii": {}}})
    assert only == ["toxicity: only run A has this metric", "pii: only run B has this metric"]


def test_manifest_helpers() -> None:
    assert metric_entries({"metrics": ["bertscore"]}) == [{"name": "bertscore", "config": {}}]
    assert metric_entries({}) == []
    assert metric_of_column("bartscore_f", ["bartscore", "bartscore_faithfulness"]) == "bartscore"
    assert metric_of_column("other_x", ["bartscore"]) is None
    manifest = {
        "metrics": [{"name": "selfcheck_nli", "higher_is_better": False}],
        "higher_is_better": {"extra_score": False},
    }
    assert higher_is_better_of(manifest, ["selfcheck_nli_mean", "unknown_x"]) == {
        "selfcheck_nli_mean": False,
        "extra_score": False,
    }


# scan_results --------------------------------------------------------------------------------------------


def _written(tmp_path: pathlib.Path, suffix: str) -> pathlib.Path:
    table = pl.DataFrame(
        {
            "id": ["a", "b", "c"],
            "prediction": ["x", "y", "z"],
            "pii_total": [0.0, 2.0, None],
            "pii_spans": [[], [{"type": "email", "start": 0, "end": 1, "text": "y"}], None],
        }
    )
    manifest = {
        "metrics": [
            {
                "name": "pii",
                "columns": ["pii_total"],
                "detail_columns": ["pii_spans"],
                "higher_is_better": False,
            }
        ],
        "input": {"records": 4, "errors": 1},
    }
    path = tmp_path / f"run{suffix}"
    Results(table, score_columns=["pii_total"], manifest=manifest, errors=[{"reason": "bad"}]).write(path)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_scan_results_reads_every_format_lazily(tmp_path: pathlib.Path, suffix: str) -> None:
    run = scan_results(_written(tmp_path, suffix))
    assert isinstance(run.table, pl.LazyFrame)
    assert run.score_columns == ["pii_total"]
    assert run.detail_columns == ["pii_spans"]
    assert run.higher_is_better == {"pii_total": False}
    assert run.error_count == 1
    assert run.table.collect_schema()["pii_total"] == pl.Float64
    assert run.summary().equals(Results.read(run.path).summary())
    scores = run.scores()
    assert scores.table.columns == ["id", "pii_total"]
    assert scores.table["pii_total"].to_list() == [0.0, 2.0, None]


def test_scan_results_summary_is_computed_without_a_stored_one(tmp_path: pathlib.Path) -> None:
    path = _written(tmp_path, ".parquet")
    manifest_file = tmp_path / "run.manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["summary"]
    write_manifest(manifest_file, manifest)
    run = scan_results(path)
    assert run.summary()["mean"][0] == pytest.approx(1.0)
    assert run.summary(confidence=0.9)["n"][0] == 2


def test_scan_results_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        scan_results(tmp_path / "missing.parquet")
    with pytest.raises(ConfigError, match="must end in"):
        scan_results(tmp_path / "run.txt")
    path = _written(tmp_path, ".parquet")
    (tmp_path / "run.manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        scan_results(path)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="cannot be read as Parquet"):
        scan_results(broken)


def test_error_count_falls_back_to_the_manifest(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cli.parquet"
    pl.DataFrame({"id": ["a"], "m_s": [0.5]}).write_parquet(path)
    write_manifest(path, {"metrics": [{"name": "m"}], "score_columns": ["m_s"], "input": {"errors": 3}})
    assert scan_results(path).error_count == 3
