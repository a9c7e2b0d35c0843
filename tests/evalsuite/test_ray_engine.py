"""The Ray engine on a local Ray cluster: the local engine's ids, rows and scores, every record once."""

from __future__ import annotations

import builtins
import json
import pickle
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from evalsuite.api import Scorer
from evalsuite.cli import app
from evalsuite.distributed import RayEngine
from evalsuite.errors import ConfigError, MissingDependencyError
from evalsuite.records import RawRecord
from evalsuite.results import manifest_path
from evalsuite.run import Work, WorkSettings
from metrics.base import load_metric

ray = pytest.importorskip("ray")

# Ray 2.60's DataContext() sets its own deprecated fields (use_push_based_shuffle, use_polars, ...).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

runner = CliRunner()
EXAMPLE = Path(__file__).parents[2] / "examples" / "answers.jsonl"
METRICS = ["toxicity:model=profanity-check", "pii", "embedding_similarity"]  # the fast lexical toxicity
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One local two-CPU cluster for the module (starting Ray takes seconds)."""
    with pytest.MonkeyPatch.context() as env:
        # The workers inherit this environment: keep them off the user's cache and any model hub.
        env.setenv("EVALSUITE_CACHE_DIR", str(tmp_path_factory.mktemp("ray-worker-cache")))
        env.setenv("HF_HUB_OFFLINE", "1")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def answers(tmp_path: Path) -> Path:
    """The 40 example answers (references a string in some, a list in others), plus PII and an
    insult so those scores are not all zero; every third record lacks its id (the index stands in),
    and a blank line shifts line numbers away from indices."""
    records = [json.loads(line) for line in EXAMPLE.read_text(encoding="utf-8").splitlines()]
    records[5]["prediction"] = "Write to jane.doe@example.com or call +1 415 555 0100."
    records[6]["prediction"] = "Only a stupid idiot would ask that, you moron."
    for record in records[::3]:
        del record["id"]
    lines = [json.dumps(record) for record in records]
    lines.insert(10, "")
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_bad_records(tmp_path: Path) -> Path:
    """Answers with three bad records: no prediction, malformed JSON, a number for references."""
    lines = answers(tmp_path).read_text(encoding="utf-8").splitlines()
    lines[3] = json.dumps({"id": "no-prediction", "references": ["x"]})
    lines[20] = '{"prediction": "cut off'
    lines[30] = json.dumps({"prediction": "A number for references.", "references": 7})
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_same_results(ray_table: pl.DataFrame, local_table: pl.DataFrame, score_columns: list[str]) -> None:
    ids = ray_table["id"].to_list()
    assert len(ids) == len(set(ids)), "a record was scored twice"
    assert ids == local_table["id"].to_list()
    assert ray_table.schema == local_table.schema
    others = [column for column in local_table.columns if column not in score_columns]
    assert ray_table.select(others).equals(local_table.select(others))  # texts, references lists, metadata
    for column in score_columns:
        difference = (ray_table[column] - local_table[column]).abs().max()
        assert difference is not None
        assert isinstance(difference, float)
        assert difference <= TOLERANCE, column


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    unexpected = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.output + (f"\n{unexpected!r}" if unexpected else "")


def metric_args(metrics: list[str]) -> list[str]:
    return [argument for metric in metrics for argument in ("-m", metric)]


@pytest.mark.slow
@pytest.mark.model
def test_cli_ray_engine_gives_the_local_scores_and_ids(tmp_path: Path, ray_cluster: Any) -> None:
    source = answers(tmp_path)
    common = [str(source), *metric_args(METRICS), "--no-cache", "--chunk-size", "8"]
    code, output = cli("score", *common, "-o", str(tmp_path / "local.parquet"))
    assert code == 0, output
    code, output = cli(
        "score", *common, "-o", str(tmp_path / "ray.parquet"), "--engine", "ray", "--workers", "2"
    )
    assert code == 0, output
    assert "summary" in output
    assert "embedding_similarity_cosine" in output
    assert "40 records scored, 0 bad records" in output

    local, scored = pl.read_parquet(tmp_path / "local.parquet"), pl.read_parquet(tmp_path / "ray.parquet")
    manifest = json.loads(manifest_path(tmp_path / "ray.parquet").read_text())
    local_manifest = json.loads(manifest_path(tmp_path / "local.parquet").read_text())
    assert scored.height == 40
    assert scored["id"].to_list()[:4] == ["0", "q02", "q03", "3"]  # absent ids: the record's index
    assert scored["pii_email"][5] == 1.0
    assert scored["toxicity_profanity"][6] > 0.5
    assert_same_results(scored, local, local_manifest["score_columns"])  # pii_spans compared exactly

    assert manifest["engine"]["name"] == "ray"
    assert manifest["engine"]["workers"] == 2
    assert manifest["engine"]["actors_used"] >= 1
    assert manifest["runtime"]["device"] == "cpu"
    assert manifest["input"] == local_manifest["input"]
    assert local_manifest["engine"] == {"name": "local"}
    for ray_row, local_row in zip(manifest["summary"], local_manifest["summary"], strict=True):
        assert ray_row["score"] == local_row["score"]
        assert ray_row["mean"] == pytest.approx(local_row["mean"], abs=TOLERANCE)


@pytest.mark.slow
@pytest.mark.model
def test_api_skips_bad_records_like_the_local_engine(tmp_path: Path, ray_cluster: Any) -> None:
    # JSON lines out; bertscore with idf needs corpus statistics fitted on the driver, sent to workers.
    bad = with_bad_records(tmp_path)
    metrics: dict[str, dict[str, Any]] = {
        "toxicity": {"model": "profanity-check"},
        "pii": {},
        "bertscore": {"idf": True},
    }
    runs = {}
    for name, engine in (("local", None), ("ray", RayEngine(workers=2))):
        with Scorer(metrics, cache=False, chunk_size=8, device="cpu") as scorer:
            runs[name] = scorer.score_file(bad, tmp_path / f"{name}.jsonl", on_error="skip", engine=engine)
    local, scored = runs["local"], runs["ray"]
    assert (scored.records, scored.errors) == (local.records, local.errors) == (37, 3)

    def read(path: Path | None) -> list[dict[str, Any]]:
        assert path is not None
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    assert read(scored.errors_file) == read(local.errors_file)  # same index, location, field, reason
    assert [entry["field"] for entry in read(scored.errors_file)] == ["prediction", None, "references"]
    ray_table = pl.read_ndjson(scored.output)
    assert_same_results(ray_table, pl.read_ndjson(local.output), scored.results.score_columns)
    assert scored.manifest["metrics"] == local.manifest["metrics"]  # idf state hash included


@pytest.mark.slow
@pytest.mark.model
def test_a_run_killed_on_the_local_engine_is_finished_on_ray(
    tmp_path: Path, ray_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parquet in (a column holds one type: references as lists; absent ids as nulls).
    records = [json.loads(line) for line in answers(tmp_path).read_text().splitlines() if line]
    for record in records:
        if isinstance(record["references"], str):
            record["references"] = [record["references"]]
    source, metrics = tmp_path / "answers.parquet", {"toxicity": {"model": "profanity-check"}, "pii": {}}
    pl.DataFrame(records).write_parquet(source)
    calls = 0
    run_chunk = Work.run

    def dies_at_third_chunk(self: Work, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return run_chunk(self, *args, **kwargs)

    monkeypatch.setattr(Work, "run", dies_at_third_chunk)
    with Scorer(metrics, cache=False, chunk_size=8) as scorer, pytest.raises(KeyboardInterrupt):
        scorer.score_file(source, tmp_path / "out.parquet")
    monkeypatch.undo()

    progress: list[int] = []
    with Scorer(metrics, cache=False, chunk_size=8) as scorer:
        resumed = scorer.score_file(
            source, tmp_path / "out.parquet", engine=RayEngine(workers=2), progress=progress.append
        )
        whole = scorer.score_file(source, tmp_path / "whole.parquet")
    assert progress[0] == 16  # the two committed chunks were not scored again
    assert sum(progress) == 40
    assert_same_results(
        pl.read_parquet(resumed.output), pl.read_parquet(whole.output), resumed.results.score_columns
    )


@pytest.mark.slow
def test_an_error_on_a_worker_reaches_the_cli_as_the_local_engine_reports_it(
    tmp_path: Path, ray_cluster: Any
) -> None:
    # The model is first needed on the workers, so the error is raised there, not on the driver.
    args = ["score", str(EXAMPLE), "-m", "embedding_similarity:model=/no/such/dir", "--no-cache"]
    for engine in ("local", "ray"):
        code, output = cli(*args, "-o", str(tmp_path / f"{engine}.parquet"), "--engine", engine)
        assert code == 2, output
        assert "error: model path '/no/such/dir' is not a directory with a model" in output


@pytest.mark.slow
def test_a_worker_that_cannot_build_its_scorer_reports_why_with_its_first_batch(ray_cluster: Any) -> None:
    from evalsuite.distributed.ray_worker import RECORDS_SCHEMA, ScoringActor

    # Raised from __init__, Ray would restart the actor over and over; it is returned instead.
    actor = ScoringActor([load_metric("pii")], WorkSettings(device="tpu"), "fail")
    raw = RawRecord(0, "record 0", {"prediction": "Hello."})
    scored = actor(pa.table({"index": [0], "record": [pickle.dumps(raw)]}, schema=RECORDS_SCHEMA))
    failure = pickle.loads(scored.column("failure")[0].as_py())
    assert isinstance(failure, ConfigError)
    assert "got 'tpu'" in str(failure)
    assert scored.column("row").to_pylist() == [None]


@pytest.mark.slow
def test_a_pool_the_cluster_cannot_hold_is_refused(tmp_path: Path, ray_cluster: Any) -> None:
    code, output = cli(
        "score", str(answers(tmp_path)), "-m", "pii", "-o", str(tmp_path / "o.parquet"), "--engine", "ray",
        "--gpus-per-worker", "1",
    )  # fmt: skip
    assert code == 2
    assert "the Ray cluster has 0 GPUs" in output


def test_bad_input_fails_before_ray_naming_record_and_field(tmp_path: Path) -> None:
    source = with_bad_records(tmp_path)
    code, output = cli(
        "score", str(source), "-m", "pii", "-o", str(tmp_path / "o.parquet"), "--engine", "ray"
    )
    assert code == 2
    assert f"{source}:4: missing required field 'prediction'" in output
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers only apply to --engine ray"),
        (["--ray-address", "auto", "--gpus-per-worker", "1"], "--ray-address, --gpus-per-worker only apply"),
        (["--engine", "spark"], "--engine must be 'local' or 'ray', got 'spark'"),
        (["--engine", "ray", "--workers", "0"], "workers must be a positive integer, got 0"),
    ],
)
def test_ray_options_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = cli("score", str(EXAMPLE), "-m", "pii", "-o", str(tmp_path / "o.parquet"), *args)
    assert code == 2
    assert message in output


def test_missing_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(MissingDependencyError, match=r"pip install 'evalsuite\[ray\]'"):
        RayEngine()
    code, output = cli(
        "score", str(EXAMPLE), "-m", "pii", "-o", str(tmp_path / "o.parquet"), "--engine", "ray"
    )
    assert code == 2  # a usage error: install the extra
    assert "evalsuite[ray]" in output


def test_ray_address_defaults_to_the_ray_address_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.cli import _score_engine

    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # what a KubeRay RayJob entrypoint sees
    engine = _score_engine("ray", None, None, 0.0)
    assert isinstance(engine, RayEngine)
    assert engine.address == "ray://head:10001"
    explicit = _score_engine("ray", "auto", None, 0.0)
    assert isinstance(explicit, RayEngine)
    assert explicit.address == "auto"
    assert _score_engine("local", None, None, 0.0) is None  # the variable never turns Ray on
