"""MLflow tracking: ``evalsuite score --mlflow``, :func:`log_to_mlflow`, and evalsuite metrics inside MLflow.

Every run is logged to a file store under ``tmp_path`` and read back with ``MlflowClient``; the
unreachable server is a closed local port, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
from typer.testing import CliRunner

import evalsuite
from evalsuite.cli import app
from evalsuite.errors import MissingDependencyError
from evalsuite.integrations.mlflow import (
    MlflowLoggingError,
    log_to_mlflow,
    mlflow_metric,
    mlflow_record,
    mlflow_scorer,
)
from evalsuite.integrations.mlflow.tracking import ALLOW_FILE_STORE_ENV
from evalsuite.manifest import manifest_path
from evalsuite.results import scan_results
from evalsuite.testing import float_tolerance

runner = CliRunner()
# Logged values pass through MLflow's store as decimal text, which repr() round-trips exactly for
# float64; a few float64 ulps allow for a store that prints fewer digits.
FLOAT64 = float_tolerance("float64", style="approx")
# Scores of one record at a time (MLflow) against a batch (evalsuite): float32 model outputs, padded
# differently.
FLOAT32 = float_tolerance("float32", style="approx")
# MLflow's own import-time and pandas-3 deprecation noise, none of it about evalsuite's use of MLflow.
MLFLOW_TYPE_HINT_WARNING = (
    "ignore:.*Any type hint is inferred as AnyType:UserWarning"  # mlflow.types, imported by its evaluators
)
PANDAS_DEPRECATIONS = (
    "ignore:The inplace keyword in DataFrame.drop is deprecated:pandas.errors.Pandas4Warning",
    "ignore:For backward compatibility, 'str' dtypes are included by select_dtypes:pandas.errors.Pandas4Warning",
)

RECORDS: list[dict[str, object]] = [
    {
        "id": "a",
        "prediction": "Write to jane.doe@example.com or call +1 415 555 0100.",
        "references": ["Contact details are on the website."],
    },
    {"id": "b", "prediction": "Nothing personal in this answer.", "references": ["No personal data."]},
    {"id": "c", "prediction": "The server at 192.168.0.12 is down.", "references": ["A server is down."]},
    {"id": "bad", "references": ["This record has no prediction."]},
]


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def write_input(folder: Path) -> Path:
    source = folder / "answers.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in RECORDS), encoding="utf-8")
    return source


def score_pii(folder: Path, *options: str) -> tuple[int, str, Path]:
    """``evalsuite score answers.jsonl -m pii --on-error skip OPTIONS``: exit code, output, result file."""
    code, output = run("score", str(write_input(folder)), "-m", "pii", "--on-error", "skip", *options)
    return code, output, folder / "answers.scores.jsonl"


def use_tracking_store(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A file store under ``folder`` as $MLFLOW_TRACKING_URI (MLflow 3 wants the file store allowed)."""
    uri = (folder / "tracking").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(ALLOW_FILE_STORE_ENV, "true")
    return uri


def only_run(uri: str, experiment: str) -> Any:
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    (logged,) = client.search_runs([found.experiment_id])
    return logged


def artifact_names(uri: str, run_id: str) -> set[str]:
    return {item.path for item in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(run_id)}


@pytest.mark.model
def test_score_logs_summary_configs_hashes_and_files_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = use_tracking_store(tmp_path, monkeypatch)
    code, output = run(
        "score",
        str(write_input(tmp_path)),
        "-m",
        "pii",
        "-m",
        "embedding_similarity",
        "--on-error",
        "skip",
        "--mlflow-experiment",
        "nightly",
    )
    assert code == 0, output
    out = tmp_path / "answers.scores.jsonl"
    logged = only_run(uri, "nightly")
    assert f"mlflow: run {logged.info.run_id} in experiment 'nightly' at {uri}" in output
    assert (logged.info.status, logged.info.run_name) == ("FINISHED", "answers.scores")

    scored = scan_results(out)
    manifest = scored.run_manifest
    metrics = logged.data.metrics
    summary = scored.summary()
    assert summary.height == 8  # 7 pii columns and the cosine
    for row in summary.iter_rows(named=True):
        assert metrics[row["score"]] == pytest.approx(row["mean"], **FLOAT64)
        for statistic in ("std", "ci_low", "ci_high"):
            assert metrics[f"{row['score']}.{statistic}"] == pytest.approx(row[statistic], **FLOAT64)
    assert (metrics["records"], metrics["errors"]) == (3, 1)
    assert metrics["duration_s"] == pytest.approx(manifest.duration_s, **FLOAT64)

    params, tags = logged.data.params, logged.data.tags
    pii, similarity = manifest.metric("pii"), manifest.metric("embedding_similarity")
    assert pii is not None
    assert similarity is not None
    assert params["pii.region"] == str(pii.config["region"])
    assert json.loads(params["pii.types"]) == pii.config["types"]  # a list, as JSON
    assert params["embedding_similarity.model"] == str(similarity.config["model"])
    assert tags["evalsuite.pii.config_hash"] == pii.config_hash
    assert tags["evalsuite.embedding_similarity.config_hash"] == similarity.config_hash
    assert tags["evalsuite.version"] == manifest.evalsuite_version == evalsuite.__version__
    assert tags["evalsuite.input.sha256"] == manifest.input.sha256
    assert tags["evalsuite.input.path"] == manifest.input.path
    assert tags["evalsuite.device"] == manifest.runtime.device
    model_tags = {name: value for name, value in tags.items() if name.startswith("evalsuite.model.")}
    assert model_tags, "the embedding model's weights hash is tagged"
    assert model_tags == {
        f"evalsuite.model.{name}.sha256": model.weights_sha256
        for name, model in manifest.models.items()
        if model.weights_sha256
    }

    report = tmp_path / "answers.scores.report.html"
    assert f"report: {report}" in output
    assert report.read_text().startswith("<!DOCTYPE html>")  # the real report, rendered beside the run
    assert artifact_names(uri, logged.info.run_id) == {
        out.name,
        manifest_path(out).name,
        "answers.scores.errors.jsonl",
        report.name,
    }


def test_a_report_that_cannot_be_rendered_is_a_warning_and_the_run_is_logged_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write_report(run: object, output: object, **_: object) -> Path:
        raise MissingDependencyError("the report needs jinja2: pip install 'evalsuite[report]'")

    monkeypatch.setattr("evalsuite.report.write_report", write_report)
    uri = use_tracking_store(tmp_path, monkeypatch)
    code, output, out = score_pii(tmp_path, "--mlflow")
    assert code == 0, output
    assert "warning: no HTML report to log to MLflow" in output
    assert "evalsuite[report]" in output
    logged = only_run(uri, "evalsuite")
    assert logged.info.status == "FINISHED"
    assert "answers.scores.report.html" not in artifact_names(uri, logged.info.run_id)
    assert out.name in artifact_names(uri, logged.info.run_id)


@pytest.mark.parametrize("allow_before", [None, "false"])
def test_without_a_tracking_uri_the_run_goes_to_a_local_mlruns_and_the_environment_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow_before: str | None
) -> None:
    code, output, out = score_pii(tmp_path)
    assert code == 0, output
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if allow_before is None:
        monkeypatch.delenv(ALLOW_FILE_STORE_ENV, raising=False)
    else:
        monkeypatch.setenv(ALLOW_FILE_STORE_ENV, allow_before)

    assert not mlflow.tracking.is_tracking_uri_set()

    run_id = evalsuite.log_to_mlflow(out, run_name="local", tags={"team": "eval/quality"})

    assert os.environ.get(ALLOW_FILE_STORE_ENV) == allow_before
    assert not mlflow.tracking.is_tracking_uri_set()  # no global set_tracking_uri
    store = tmp_path / "mlruns"
    assert store.is_dir()
    monkeypatch.setenv(ALLOW_FILE_STORE_ENV, "true")  # to read the store back
    client = mlflow.MlflowClient(tracking_uri=store.as_uri())
    logged = client.get_run(run_id)
    assert client.get_experiment(logged.info.experiment_id).name == "evalsuite"
    assert logged.info.run_name == "local"
    assert logged.data.tags["team"] == "eval/quality"
    assert logged.data.metrics["pii_total"] == pytest.approx(
        scan_results(out).summary()["mean"][-1], **FLOAT64
    )


def test_an_unreachable_tracking_server_is_a_warning_naming_the_call_to_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 (discard) refuses at once; no retries, so the failure takes milliseconds.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    code, output, out = score_pii(tmp_path, "--mlflow-experiment", "nightly")
    assert code == 0, output
    assert out.is_file()
    assert manifest_path(out).is_file()
    assert "warning: the run was not logged to MLflow" in output
    assert "http://127.0.0.1:9" in output
    assert f"The scored results are safe at {out}" in output
    assert (
        "python -c 'import evalsuite; evalsuite.log_to_mlflow("
        f'{json.dumps(str(out))}, experiment="nightly", report="{tmp_path / "answers.scores.report.html"}")'
        "'" in output
    )
    assert "Traceback" not in output


def test_a_failed_upload_marks_the_created_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = use_tracking_store(tmp_path, monkeypatch)
    code, output, out = score_pii(tmp_path)
    assert code == 0, output

    def no_space(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mlflow.MlflowClient, "log_artifact", no_space)
    with pytest.raises(MlflowLoggingError) as caught:
        log_to_mlflow(out, experiment="nightly")
    logged = only_run(uri, "nightly")
    assert logged.info.status == "FAILED"
    message = str(caught.value)
    assert f"MLflow run {logged.info.run_id} was marked FAILED" in message
    assert "No space left on device" in message
    assert uri in message
    assert caught.value.tracking_uri == uri
    assert caught.value.rerun == (
        f"python -c 'import evalsuite; evalsuite.log_to_mlflow({json.dumps(str(out))}, experiment=\"nightly\")'"
    )


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda out: log_to_mlflow(out), id="log_to_mlflow"),
        pytest.param(lambda out: mlflow_scorer("pii"), id="mlflow_scorer"),
        pytest.param(lambda out: mlflow_metric("pii"), id="mlflow_metric"),
    ],
)
def test_without_mlflow_each_entry_point_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: Callable[[Path], object]
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'evalsuite[mlflow]'")):
        call(tmp_path / "answers.scores.jsonl")


def test_score_with_mlflow_but_without_it_stops_before_scoring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code, output, out = score_pii(tmp_path, "--mlflow")
    assert code == 2, output
    assert "evalsuite[mlflow]" in output
    assert not out.exists()


def test_mlflow_metric_explains_an_mlflow_without_make_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.metrics

    monkeypatch.delattr(mlflow.metrics, "make_metric")
    with pytest.raises(MissingDependencyError, match=r"mlflow\.metrics\.make_metric.*use mlflow_scorer"):
        mlflow_metric("pii")


MLFLOW_ROWS: list[dict[str, Any]] = [
    {
        "inputs": {
            "question": "What is the capital of France?",
            "context": ["France is in Europe.", "Paris."],
        },
        "outputs": "The capital of France is Paris.",
        "expectations": {"expected_response": "Paris is the capital of France."},
    },
    {
        "inputs": {"question": "How many legs does a spider have?"},
        "outputs": {"response": "A spider has eight legs."},
        "expectations": {"expected_response": ["Spiders have 8 legs.", "Eight."]},
    },
    {
        "inputs": "Translate 'thank you' into German.",
        "outputs": "Danke schön!",
        "expectations": {"expected_response": "Danke."},
    },
]


def test_mlflow_record_maps_inputs_outputs_and_expectations() -> None:
    assert [mlflow_record(**row) for row in MLFLOW_ROWS] == [
        {
            "prediction": "The capital of France is Paris.",
            "references": "Paris is the capital of France.",
            "prompt": "What is the capital of France?",
            "source": "France is in Europe.\n\nParis.",
        },
        {
            "prediction": "A spider has eight legs.",
            "references": ["Spiders have 8 legs.", "Eight."],
            "prompt": "How many legs does a spider have?",
        },
        {
            "prediction": "Danke schön!",
            "references": "Danke.",
            "prompt": "Translate 'thank you' into German.",
        },
    ]


def test_mlflow_scorer_chooses_the_headline_column_and_checks_a_given_one() -> None:
    assert mlflow_scorer("pii").name == "pii_total"
    assert mlflow_scorer("pii", column="pii_email").name == "pii_email"
    with pytest.raises(evalsuite.ConfigError, match="column must be one of"):
        mlflow_scorer("pii", column="pii_phone_numbers")


@pytest.mark.model
@pytest.mark.filterwarnings(MLFLOW_TYPE_HINT_WARNING)
def test_mlflow_scorer_in_genai_evaluate_gives_evalsuite_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_tracking_store(tmp_path, monkeypatch)
    expected = evalsuite.score([mlflow_record(**row) for row in MLFLOW_ROWS], ["embedding_similarity"])

    scorer = mlflow_scorer("embedding_similarity")
    assert scorer.name == "embedding_similarity_cosine"
    result = mlflow.genai.evaluate(data=MLFLOW_ROWS, scorers=[scorer])

    assert result.metrics["embedding_similarity_cosine/mean"] == pytest.approx(
        expected.mean("embedding_similarity_cosine"), **FLOAT32
    )
    per_row = result.result_df["embedding_similarity_cosine/value"].tolist()  # rows in MLflow's order
    assert sorted(per_row) == pytest.approx(
        sorted(expected["embedding_similarity_cosine"].to_list()), **FLOAT32
    )


@pytest.mark.model
@pytest.mark.filterwarnings(MLFLOW_TYPE_HINT_WARNING, *PANDAS_DEPRECATIONS)
def test_mlflow_metric_in_models_evaluate_gives_evalsuite_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    use_tracking_store(tmp_path, monkeypatch)
    records = [mlflow_record(**row) for row in MLFLOW_ROWS]
    for record in records:  # one reference each: MLflow hashes the targets, and a list has no hash
        if isinstance(record["references"], list):
            record["references"] = record["references"][0]
    expected = evalsuite.score(records, ["embedding_similarity"])
    frame = pd.DataFrame(
        {
            "inputs": [record["prompt"] for record in records],
            "predictions": [record["prediction"] for record in records],
            "targets": [record["references"] for record in records],
        }
    )
    result = mlflow.models.evaluate(
        data=frame,
        predictions="predictions",
        targets="targets",
        extra_metrics=[mlflow_metric("embedding_similarity")],
        evaluators="default",
    )
    summary = expected.summary().row(0, named=True)
    for statistic in ("mean", "std", "ci_low", "ci_high"):
        assert result.metrics[f"embedding_similarity_cosine/{statistic}"] == pytest.approx(
            summary[statistic], **FLOAT32
        )
    assert result.metrics["embedding_similarity_cosine/errors"] == 0


def test_mlflow_metric_scores_each_row_and_counts_the_rows_it_cannot_score() -> None:
    import pandas as pd

    metric = mlflow_metric("pii")
    predictions = pd.Series(["Mail jane.doe@example.com today.", ["not", "a", "text"], "Nothing here."])
    value = metric.eval_fn(predictions)
    assert value.scores[0] == 1.0
    assert value.scores[2] == 0.0
    assert value.scores[1] != value.scores[1]  # NaN: the row that failed validation
    assert value.aggregate_results["mean"] == pytest.approx(0.5, **FLOAT64)
    assert value.aggregate_results["errors"] == 1.0


def test_a_metric_field_missing_from_the_mlflow_data_names_where_it_belongs() -> None:
    import pandas as pd

    with pytest.raises(
        evalsuite.InputError, match=r"needs 'references' from expectations\['expected_response'\]"
    ):
        mlflow_metric("embedding_similarity").eval_fn(pd.Series(["An answer without a reference."]))
