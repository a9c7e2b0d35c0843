"""The Scorer and score(): inputs, errors, corpus statistics, the score cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import evalsuite
from evalsuite.api import Scorer, build_metrics
from evalsuite.errors import ConfigError, InputError, ThresholdError
from evalsuite.runtime import models
from metrics.bertscore import BERTScore

pytestmark = pytest.mark.model

RECORDS: list[dict[str, Any]] = [
    {"prediction": "The cat sat on the mat.", "references": ["A cat was sitting on the mat."], "task": "a"},
    {
        "prediction": "Paris is the capital of France.",
        "references": "France's capital is Paris.",
        "task": "b",
    },
    {
        "prediction": "Water boils at 100 °C at sea level.",
        "references": ["At sea level water boils at 100 degrees."],
        "task": "a",
    },
]


def test_score_returns_one_row_per_record_with_named_columns() -> None:
    res = evalsuite.score(RECORDS, ["bertscore", "embedding_similarity"], device="cpu", cache=False)
    assert res.table["id"].to_list() == ["0", "1", "2"]
    assert res.table["task"].to_list() == ["a", "b", "a"]
    assert res.table["references"].to_list()[1] == ["France's capital is Paris."]
    assert res.score_columns == [
        "bertscore_precision", "bertscore_recall", "bertscore_f1", "embedding_similarity_cosine",
    ]  # fmt: skip
    assert res.table.schema["bertscore_f1"] == pl.Float64
    summary = res.summary()
    assert summary["n"].to_list() == [3, 3, 3, 3]
    assert res.manifest["runtime"]["device"] == "cpu"
    res.assert_thresholds({"bertscore_f1": 0.5})
    with pytest.raises(ThresholdError, match="bertscore_f1"):
        res.assert_thresholds({"bertscore_f1": 0.999})


def test_dataframe_input_with_field_mapping() -> None:
    frame = pl.DataFrame(
        {"answer": [r["prediction"] for r in RECORDS], "gold": [r["references"] for r in RECORDS[:1]] * 3}
    )
    res = evalsuite.score(
        frame, ["bertscore"], fields={"prediction": "answer", "references": "gold"}, cache=False
    )
    assert len(res) == 3
    assert "answer" not in res.table.columns


def test_file_input_records_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    res = evalsuite.score(path, ["bertscore"], cache=False)
    assert len(res.manifest["input"]["sha256"]) == 64
    assert res.manifest["input"]["records"] == 3


def test_bad_records_fail_or_are_collected() -> None:
    records = [*RECORDS, {"prediction": "", "references": ["x"]}]
    with pytest.raises(InputError, match="record 3: field 'prediction'"):
        evalsuite.score(records, ["bertscore"], cache=False)
    res = evalsuite.score(records, ["bertscore"], cache=False, on_error="skip")
    assert len(res) == 3
    assert res.errors[0]["location"] == "record 3"
    assert res.summary()["errors"].to_list() == [1, 1, 1]


def test_empty_input_gives_empty_results() -> None:
    res = evalsuite.score([], ["bertscore"], cache=False)
    assert len(res) == 0
    assert "bertscore_f1" in res.table.columns


def test_invalid_parameters_say_what_was_expected() -> None:
    with pytest.raises(ConfigError, match="on_error must be 'fail' or 'skip'"):
        evalsuite.score(RECORDS, ["bertscore"], on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        Scorer(["bertscore"], batch_size=0, cache=False)
    with pytest.raises(ConfigError, match="same column"):
        build_metrics([BERTScore(), BERTScore(idf=True)])


def test_idf_is_computed_over_the_whole_input_not_per_chunk() -> None:
    whole = Scorer([BERTScore(idf=True)], cache=False, chunk_size=1000).score(RECORDS)
    chunked = Scorer([BERTScore(idf=True)], cache=False, chunk_size=1).score(RECORDS)
    assert whole["bertscore_f1"].to_list() == pytest.approx(chunked["bertscore_f1"].to_list(), abs=1e-6)


def test_second_run_of_an_unchanged_file_makes_no_model_call(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    cache = tmp_path / "cache.sqlite"
    first = Scorer(["bertscore", "embedding_similarity"], cache=cache)
    first_run = first.score_file(source, tmp_path / "a.jsonl")
    assert first.runtime.stats.forward_passes > 0
    first.close()

    models.clear_model_cache()
    second = Scorer(["bertscore", "embedding_similarity"], cache=cache)
    second_run = second.score_file(source, tmp_path / "b.jsonl")
    assert second.runtime.stats.forward_passes == 0
    assert models._loaded == {}, "a fully cached run must not even load the model"
    assert second.cache_hits == 6
    assert second.cache_misses == 0
    assert second_run.results.table.equals(first_run.results.table)
    second.close()


def test_cache_is_keyed_by_config() -> None:
    scorer = Scorer(["bertscore"], cache=True)
    scorer.score(RECORDS)
    other = Scorer([BERTScore(num_layers=3)], cache=True)
    other.score(RECORDS)
    assert other.cache_misses == 3


def test_pandas_and_lazy_frames_score_like_records() -> None:
    pandas = pytest.importorskip("pandas")
    rows = [{"id": "a", "prediction": "mail jo@example.com"}, {"id": "b", "prediction": "none here"}]
    expected = evalsuite.score(rows, ["pii"], cache=False).table
    for source in (pandas.DataFrame(rows), pl.DataFrame(rows).lazy()):
        got = evalsuite.score(source, ["pii"], cache=False).table
        assert got.equals(expected), type(source)


def test_a_lone_surrogate_is_an_input_error_through_the_api() -> None:
    rows = [{"id": "a", "prediction": "x \ud800"}, {"id": "b", "prediction": "fine"}]
    with pytest.raises(InputError, match=r"record 0: field 'prediction' is not valid Unicode"):
        evalsuite.score(rows, ["pii"], cache=False)
    results = evalsuite.score(rows, ["pii"], cache=False, on_error="skip")
    assert results.table["id"].to_list() == ["b"]
    assert [error["field"] for error in results.errors] == ["prediction"]


def test_mixed_metadata_in_memory_is_json_text_with_a_warning() -> None:
    rows = [{"prediction": "a", "m": {"k": 1}}, {"prediction": "b", "m": [1]}]
    with pytest.warns(UserWarning, match=r"column\(s\) 'm' hold values of more than one type"):
        results = evalsuite.score(rows, ["pii"], cache=False)
    assert results.table["m"].to_list() == ['{"k": 1}', "[1]"]
