"""The typed run manifest (evalsuite.manifest): build, write, read, validate, diff."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from datetime import UTC, datetime

import polars as pl
import pytest

from evalsuite.errors import ConfigError
from evalsuite.manifest import (
    CacheInfo,
    EngineInfo,
    InputInfo,
    MetricEntry,
    ModelInfo,
    RunManifest,
    RuntimeInfo,
    SummaryRow,
    config_differences,
    higher_is_better_of,
    manifest_path,
    metric_entries,
    read_manifest,
    score_columns_of,
    timestamp,
    write_manifest,
)
from evalsuite.results import Results, scan_results


def _scoring_manifest() -> RunManifest:
    """A manifest as ``evalsuite score`` builds it, from keyword arguments."""
    return RunManifest(
        evalsuite_version="0.1.0",
        python="3.11.7",
        torch="2.13.0+cpu",
        transformers="5.23.0",
        runtime=RuntimeInfo(device="cpu", dtype="float32", batch_size=64, token_budget=16384),
        metrics=[
            MetricEntry(
                name="pii",
                metric_class="metrics.pii:PII",
                config={"region": "US", "types": None},
                config_hash="p1",
                state_hash="",
                columns=["pii_total"],
                detail_columns=["pii_spans"],
                higher_is_better=False,
                models=[],
            )
        ],
        models={},
        input=InputInfo(path="answers.jsonl", sha256="ab" * 32, records=4, errors=1),
        fields={"prediction": "output"},
        truncated_texts={},
        cache=CacheInfo(path=None, hits=0, misses=4),
        engine=EngineInfo(name="local"),
        score_columns=["pii_total"],
        summary=[SummaryRow(score="pii_total", mean=1.0, std=1.4, ci_low=0.0, ci_high=2.0, n=2, errors=1)],
        output="out.parquet",
        errors_file=None,
        json_text_columns=[],
        started_at=timestamp(0),
        finished_at=timestamp(2),
        duration_s=2.0,
    )


def test_round_trip_keeps_every_key_and_the_json_format(tmp_path: pathlib.Path) -> None:
    manifest = _scoring_manifest()
    written = write_manifest(tmp_path / "run.parquet", manifest)
    assert written == tmp_path / "run.manifest.json"
    raw = json.loads(written.read_text())
    assert raw["metrics"][0]["class"] == "metrics.pii:PII"  # the JSON key stays "class"
    assert "metric_class" not in raw["metrics"][0]
    assert raw["errors_file"] is None  # an explicit None is written as null
    assert raw["finished_at"] == "1970-01-01T00:00:02+00:00"
    assert "errors" not in raw  # unset: not recorded (readers fall back to the errors file)
    assert "command" not in raw
    assert written.read_text() == json.dumps(raw, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert raw == manifest.to_json_dict()
    back = RunManifest.read(tmp_path / "run.parquet")
    assert back == manifest
    assert back.to_json_dict() == raw
    assert read_manifest(written) == raw
    assert back.metrics[0].metric_class == "metrics.pii:PII"
    assert back.input.errors == 1
    assert back.error_count == 1


def test_build_from_a_dict_with_the_json_keys() -> None:
    manifest = RunManifest.model_validate(
        {
            "metrics": [{"name": "m", "class": "pkg.mod:M", "higher_is_better": True}],
            "runtime": {"device": "cuda"},
        }
    )
    assert manifest.metrics[0].metric_class == "pkg.mod:M"
    assert manifest.metrics[0].model_extra == {}
    assert manifest.runtime.device == "cuda"
    # Assignments take dicts too, and timestamps may be given as datetimes.
    manifest.engine = {"name": "ray", "workers": 2}  # type: ignore[assignment]
    manifest.started_at = datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC)  # type: ignore[assignment]
    assert manifest.engine.workers == 2
    assert manifest.to_json_dict()["started_at"] == "1970-01-01T00:00:02+00:00"
    assert RunManifest.coerce(manifest) is manifest
    assert RunManifest.coerce(None).is_empty


def test_an_older_manifest_without_newer_fields_reads(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "old.parquet"
    pl.DataFrame({"id": ["a", "b"], "bertscore_f1": [0.9, 0.8], "latency": [1.0, 2.0]}).write_parquet(path)
    # Metrics as {name: config}, no score_columns, summary, errors, errors_file, engine or runtime.
    old = {"evalsuite_version": "0.0.9", "metrics": {"bertscore": {"idf": True}}, "input": {"records": 2}}
    (tmp_path / "old.manifest.json").write_text(json.dumps(old))
    manifest = RunManifest.read(path)
    assert manifest.metrics == [MetricEntry(name="bertscore", config={"idf": True})]
    assert manifest.score_columns is None
    assert manifest.errors is None
    assert manifest.error_count is None
    assert manifest.summary == []
    assert manifest.runtime.device is None
    assert manifest.engine.name is None
    assert manifest.metrics[0].higher_is_better is None
    assert manifest.metrics[0].detail_columns is None
    # Written back, it gains no keys it did not have (the metrics in the list form written now).
    assert set(manifest.to_json_dict()) == set(old)
    assert metric_entries(old) == [{"name": "bertscore", "config": {"idf": True}}]
    assert metric_entries({"metrics": ["pii"]}) == [{"name": "pii", "config": {}}]
    run = Results.read(path)
    assert run.score_columns == ["bertscore_f1"]
    assert run.run_manifest.metric_names == ["bertscore"]
    assert scan_results(path).error_count == 0


def test_unknown_keys_are_kept_and_written_back(tmp_path: pathlib.Path) -> None:
    raw = {
        "note": {"owner": "team-a"},
        "metrics": [{"name": "m", "columns": ["m_s"], "weights_note": "v2"}],
        "runtime": {"device": "cpu", "cuda_version": "12.4"},
    }
    manifest = RunManifest.model_validate(raw)
    assert manifest.model_extra == {"note": {"owner": "team-a"}}
    assert manifest.metrics[0].model_extra == {"weights_note": "v2"}
    manifest.write(tmp_path / "run.manifest.json")
    assert json.loads((tmp_path / "run.manifest.json").read_text()) == raw
    # Results keep them through a write and a read.
    table = pl.DataFrame({"id": ["a"], "m_s": [0.5]})
    path = Results(table, score_columns=["m_s"], manifest=raw).write(tmp_path / "res.jsonl")
    back = Results.read(path)
    assert back.manifest["note"] == {"owner": "team-a"}
    assert back.manifest["runtime"]["cuda_version"] == "12.4"
    assert back.run_manifest.metrics[0].model_extra == {"weights_note": "v2"}


def test_a_changed_default_section_is_written() -> None:
    manifest = RunManifest()
    assert manifest.is_empty
    manifest.input.errors = 3  # a sub-model changed in place, never assigned to the manifest
    assert manifest.to_json_dict() == {"input": {"errors": 3}}
    assert not manifest.is_empty


def test_invalid_manifests_raise_config_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match=r"input: .*valid dictionary"):
        RunManifest.coerce({"input": "answers.jsonl"})
    with pytest.raises(ConfigError, match=r"metrics\.0\.name: Field required"):
        write_manifest(tmp_path / "run.parquet", {"metrics": [{"config": {}}]})
    assert not (tmp_path / "run.manifest.json").exists()
    (tmp_path / "bad.manifest.json").write_text('{"score_columns": "m_s"}')
    with pytest.raises(ConfigError, match=r"bad\.manifest\.json.*score_columns"):
        RunManifest.read(tmp_path / "bad.parquet")
    (tmp_path / "list.manifest.json").write_text("[]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        read_manifest(tmp_path / "list.manifest.json")
    manifest = RunManifest()
    with pytest.raises(ValueError, match="score_columns"):
        manifest.score_columns = "m_s"  # type: ignore[assignment]  # assignments are validated


def test_diff_names_config_state_and_weight_changes() -> None:
    a = _scoring_manifest()
    assert config_differences(a, a) == []
    b = RunManifest.model_validate(a.to_json_dict())
    b.metrics[0].config = {"region": "UK", "types": None}
    b.metrics[0].config_hash = "p2"
    b.metrics[0].state_hash = "fitted"
    b.metrics.append(MetricEntry(name="toxicity", config={}))
    b.models = {"minilm": ModelInfo(weights_sha256="b" * 64)}
    a.models = {"minilm": ModelInfo(weights_sha256="a" * 64)}
    assert config_differences(a, b.to_json_dict()) == [
        "pii: config hash differs (A p1, B p2): region US → UK",
        "pii: fitted corpus statistics (e.g. idf weights) differ",
        "toxicity: only run B has this metric",
        f"model minilm: weights differ (A {'a' * 12}, B {'b' * 12})",
    ]


def test_directions_and_score_columns() -> None:
    manifest = RunManifest(
        metrics=[
            MetricEntry(name="pii", columns=["pii_total"], higher_is_better=False),
            MetricEntry(name="bartscore_faithfulness", higher_is_better=True),
        ],
        higher_is_better={"extra_x": False},
    )
    assert higher_is_better_of(manifest, ["bartscore_faithfulness_score"]) == {
        "pii_total": False,
        "bartscore_faithfulness_score": True,
        "extra_x": False,
    }
    assert manifest.metric_of_column("pii_total") == manifest.metrics[0]
    schema = {"id": pl.String(), "pii_total": pl.Float64(), "pii_empty": pl.Null(), "latency": pl.Float64()}
    assert score_columns_of(schema, manifest) == ["pii_total", "pii_empty"]
    assert score_columns_of(schema, None) == ["pii_total", "latency"]
    assert score_columns_of(schema, {"score_columns": ["latency"]}) == ["latency"]


def test_manifest_path_maps_result_files() -> None:
    assert manifest_path("out/run.csv") == pathlib.Path("out/run.manifest.json")
    assert manifest_path("out/run.manifest.json") == pathlib.Path("out/run.manifest.json")


def test_import_is_light() -> None:
    code = (
        "import sys, evalsuite.manifest; "
        "heavy = [m for m in ('torch', 'transformers', 'scipy', 'numpy', 'polars') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
