"""``evalsuite factuality-fit`` run for real (typer's runner, a tiny NLI model), and its aggregator in use."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from evalsuite.api import Scorer
from evalsuite.cli import app
from evalsuite.errors import ConfigError
from metrics.base import load_metric

runner = CliRunner()
SOURCE = "The plant opened in 1998. It employs 300 people. It closed in 2020."


def labelled(count: int = 8) -> list[dict[str, Any]]:
    """Half consistent (a sentence of the source), half not (a made-up one)."""
    return [
        {
            "id": f"r{i}",
            "source": SOURCE,
            "prediction": "The plant opened in 1998." if i % 2 == 0 else f"The plant sells {i} cars a day.",
            "label": 1 if i % 2 == 0 else 0,
        }
        for i in range(count)
    ]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def fit(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["factuality-fit", *args])
    return result.exit_code, result.output


def test_fit_writes_an_aggregator_the_metric_uses(tmp_path: Path, tiny_nli_model: Path) -> None:
    data = write_jsonl(tmp_path / "labelled.jsonl", labelled())
    out = tmp_path / "aggregator.json"
    code, output = fit(
        str(data), "--out", str(out), "--model", str(tiny_nli_model), "--bins", "5", "--device", "cpu"
    )
    assert code == 0, output
    assert "fitted on 8 records of labelled.jsonl (4 consistent, 4 not; 8 claims)" in output
    saved = json.loads(out.read_text())
    assert saved["bins"] == 5
    assert len(saved["weights"]) == 10
    assert saved["nli_model"] == str(tiny_nli_model)
    assert saved["fitted_on"] == {
        "file": "labelled.jsonl",
        "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "records": 8,
        "consistent": 4,
        "inconsistent": 4,
        "claims": 8,
    }
    config = {"checker": "summac-conv", "aggregator": str(out), "model": str(tiny_nli_model)}
    with Scorer({"factuality": config}, device="cpu", cache=False) as scorer:
        results = scorer.score(labelled(4))
    assert results.score_columns == ["factuality_mean", "factuality_min"]
    assert all(0.0 < value < 1.0 for value in results["factuality_mean"].to_list())
    # The metric refuses the aggregator on another model.
    with pytest.raises(ConfigError, match="fitted with model="):
        load_metric("factuality", checker="summac-conv", aggregator=str(out))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_fit_reads_csv_and_parquet_with_a_mapped_field(
    tmp_path: Path, tiny_nli_model: Path, suffix: str
) -> None:
    frame = pl.DataFrame(labelled()).rename({"prediction": "summary", "label": "consistent"})
    data = tmp_path / f"labelled{suffix}"
    if suffix == ".csv":
        frame.write_csv(data)
    else:
        frame.write_parquet(data)
    out = tmp_path / "aggregator.json"
    code, output = fit(
        str(data),
        "--out",
        str(out),
        "--model",
        str(tiny_nli_model),
        "--label-field",
        "consistent",
        "--field",
        "prediction=summary",
        "--device",
        "cpu",
    )
    assert code == 0, output
    assert json.loads(out.read_text())["fitted_on"]["consistent"] == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": 2}, "labelled.jsonl:3: field 'label' must be 0 or 1"),
        ({"label": "yes"}, "labelled.jsonl:3: field 'label' must be 0 or 1"),
        ({"label": None}, "labelled.jsonl:3: field 'label' is null"),
        ({"prediction": ""}, "labelled.jsonl:3: field 'prediction' is an empty string"),
    ],
)
def test_a_bad_record_is_named_and_exits_2(
    tmp_path: Path, tiny_nli_model: Path, change: dict[str, Any], message: str
) -> None:
    records = labelled()
    records[2].update(change)
    data = write_jsonl(tmp_path / "labelled.jsonl", records)
    code, output = fit(str(data), "--out", str(tmp_path / "a.json"), "--model", str(tiny_nli_model))
    assert code == 2
    assert message in " ".join(output.split())
    assert not (tmp_path / "a.json").exists()


def test_a_missing_label_field_is_named(tmp_path: Path, tiny_nli_model: Path) -> None:
    data = write_jsonl(tmp_path / "labelled.jsonl", labelled())
    code, output = fit(str(data), "--out", str(tmp_path / "a.json"), "--label-field", "verdict")
    assert code == 2
    assert "labelled.jsonl:1: missing required field 'verdict'" in " ".join(output.split())


def test_one_class_only_is_refused(tmp_path: Path, tiny_nli_model: Path) -> None:
    data = write_jsonl(tmp_path / "labelled.jsonl", [r for r in labelled() if r["label"] == 1])
    code, output = fit(str(data), "--out", str(tmp_path / "a.json"), "--model", str(tiny_nli_model))
    assert code == 2
    assert "needs both consistent (1) and inconsistent (0) records" in " ".join(output.split())


def test_bad_options_exit_2(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "labelled.jsonl", labelled())
    code, output = fit(str(data), "--out", str(tmp_path / "a.json"), "--granularity", "page")
    assert code == 2
    assert "--granularity must be 'sentence' or 'window', got 'page'" in output
    code, output = fit(str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "a.json"))
    assert code == 2
    assert "does not exist" in output
