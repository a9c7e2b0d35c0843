"""``evalsuite proxy cascade --judge``: the judge is called on the records the proxy sends, for real,
over HTTP (a canned OpenAI-compatible server on 127.0.0.1), and its verdicts are merged."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from evalsuite.cli.proxy import proxy_app
from evalsuite.results import Results
from evalsuite.testing import FakeChatServer, chat_completion

app = typer.Typer()
app.add_typer(proxy_app, name="proxy")
runner = CliRunner()
N = 200
BUDGET = 0.3
TEMPLATE = {
    "input": "Question: {prompt}\nAnswer: {prediction}",
    "question": "Is the answer good? Answer yes or no.",
}


def run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(arg) for arg in args])
    return result.exit_code, " ".join(result.output.split())  # as one line, whatever the terminal's width


def write_run(path: Path, quality: np.ndarray, *, start: int = 0, labels: list[int] | None = None) -> Path:
    ids = [f"q{start + i}" for i in range(len(quality))]
    columns: dict[str, Any] = {
        "id": ids,
        "prompt": [f"Question {start + i}?" for i in range(len(quality))],
        "prediction": ["good answer" if q > 0 else "bad answer" for q in quality],
        "m_quality": quality,
    }
    if labels is not None:
        columns["label"] = labels
    manifest = {"metrics": [{"name": "m", "config": {}, "config_hash": "cfg", "columns": ["m_quality"]}]}
    Results(pl.DataFrame(columns), score_columns=["m_quality"], manifest=manifest).write(path)
    return path


FAILING: set[str] = set()  # questions the judge fails on (a failure the cascade must survive)


def judge_reply(body: dict[str, Any]) -> Any:
    """'yes' to good answers, with 0.9; a 500 for the questions in FAILING."""
    prompt = body["messages"][-1]["content"]
    last = prompt.rsplit("Question: ", 1)[-1]
    if last.split("?")[0] in FAILING:
        return (500, {}, "model crashed")
    answer, other = ("yes", "no") if "good answer" in last.split("\n")[1] else ("no", "yes")
    return chat_completion(answer, [{answer: math.log(0.9), other: math.log(0.1)}], prompt_tokens=50)


@pytest.fixture
def fitted(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(5)
    quality = rng.normal(size=N)
    labels = (quality + 0.8 * rng.normal(size=N) > 0).astype(int)
    results = write_run(tmp_path / "run.parquet", quality)
    labels_path = tmp_path / "labels.jsonl"
    labels_path.write_text(
        "".join(json.dumps({"id": f"q{i}", "good": int(v)}) + "\n" for i, v in enumerate(labels))
    )
    model = tmp_path / "judge.proxy"
    code, output = run(
        "proxy", "fit", results, "--labels", labels_path, "--label-field", "good", "--model-family", "linear",
        "-o", model,
    )  # fmt: skip
    assert code == 0, output
    template = tmp_path / "template.json"
    template.write_text(json.dumps(TEMPLATE))
    return results, model, template


def test_the_judge_is_called_only_on_escalated_records_and_verdicts_are_merged(
    tmp_path: Path, fitted: tuple[Path, Path, Path]
) -> None:
    results, model, template = fitted
    out = tmp_path / "verdicts.jsonl"
    code, output = run("proxy", "cascade", results, "--model", model, "--budget", BUDGET, "-o", out)
    first_escalated = pl.read_ndjson(out).sort("escalation_rank").filter(pl.col("needs_judge"))["id"][0]
    FAILING.add(f"Question {first_escalated[1:]}")
    with FakeChatServer(judge_reply) as server:
        spec = f"kind=binary,base_url={server.base_url},model=canned,template={template},retries=0"
        args = ("proxy", "cascade", results, "--model", model, "--budget", BUDGET, "-o", out, "--judge", spec)
        code, output = run(*args, "--price-per-1k", "0.5")
        sent = len(server.requests)
        again, output_again = run(*args)
    FAILING.clear()
    assert code == 0, output
    escalated = int(BUDGET * N)
    assert sent == escalated  # one call per escalated record, none for the others
    frame = pl.read_ndjson(out)
    assert frame.height == N
    judged = frame.filter(pl.col("verdict_source") == "judge")
    assert judged.height == escalated - 1
    assert frame.filter(pl.col("verdict_source") == "proxy (judge failed)")["id"].to_list() == [
        first_escalated
    ]
    assert frame.filter(~pl.col("needs_judge"))["verdict_source"].unique().to_list() == ["proxy"]
    kept = frame.filter(pl.col("verdict_source") != "judge")
    assert kept["verdict"].to_list() == kept["judge_prediction"].to_list()
    good = judged["llm_judge_probability"].to_numpy() > 0.5
    assert judged["verdict"].to_list() == good.astype(int).tolist()  # "yes" is the proxy's class 1
    assert f"judge: {escalated - 1} of {escalated} escalated records judged (1 failed" in output
    assert f"{escalated} requests sent (0 retries), 0 from the cache" in output
    tokens = 50 * (escalated - 1)
    assert f"tokens: {tokens} prompt + {escalated - 1} completion" in output
    assert f"cost: {(tokens + escalated - 1) / 1000 * 0.5:.4f}" in output
    errors = [json.loads(line) for line in Path(f"{out}.errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1
    assert "model crashed" in errors[0]["reason"]
    # The re-run reads every verdict from the cache; only the failed record is asked again.
    assert again == 0, output_again
    assert f"{escalated - 1} from the cache" in output_again
    assert "1 requests sent" in output_again


def test_supericl_cascade_shows_the_proxys_out_of_fold_predictions(
    tmp_path: Path, fitted: tuple[Path, Path, Path]
) -> None:
    results, model, template = fitted
    rng = np.random.default_rng(9)
    quality = rng.normal(size=12)
    fresh = write_run(
        tmp_path / "examples.parquet", quality, start=1000, labels=(quality > 0).astype(int).tolist()
    )
    out = tmp_path / "verdicts.jsonl"
    with FakeChatServer(judge_reply) as server:
        spec = f"kind=binary,base_url={server.base_url},model=canned,template={template},retries=0,k=4"
        base = ("proxy", "cascade", results, "--model", model, "--budget", "0.05", "-o", out, "--judge", spec)
        code, output = run(*base, "--judge-examples", fresh)
        assert code == 0, output
        prompt = server.requests[0]["messages"][-1]["content"]
        in_sample = write_run(tmp_path / "seen.parquet", quality, start=0, labels=[1] * 6 + [0] * 6)
        refused, message = run(*base, "--judge-examples", in_sample)
    assert prompt.count("proxy Prediction: ") == 5
    assert prompt.count("\nLabel: ") == 4
    assert "Each input below comes with the prediction of a small model (proxy)" in prompt
    assert refused == 2
    assert "12 in-context examples were in the judge proxy's training data" in message
