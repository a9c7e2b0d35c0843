"""``evalsuite proxy fit / predict / cascade``, run for real through typer's runner on a fresh app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from evalsuite.cli.proxy import proxy_app
from evalsuite.results import Results

app = typer.Typer()
app.add_typer(proxy_app, name="proxy")
runner = CliRunner()
N = 240


def run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.output


def write_run(path: Path, quality: np.ndarray, *, config_hash: str = "cfg-1") -> Path:
    table = pl.DataFrame(
        {
            "id": [f"q{i}" for i in range(len(quality))],
            "prompt": [f"Question {i}?" for i in range(len(quality))],
            "prediction": ["word " * (1 + int(3 * abs(q))) for q in quality],
            "m_quality": quality,
        }
    )
    manifest = {
        "metrics": [
            {"name": "m", "config": {"v": config_hash}, "config_hash": config_hash, "columns": ["m_quality"]}
        ]
    }
    Results(table, score_columns=["m_quality"], manifest=manifest).write(path)
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(41)
    quality_a, quality_b = rng.normal(size=N), rng.normal(size=N)
    margin = quality_b - quality_a + 0.4 * rng.normal(size=N)
    labels = [
        {"id": f"q{i}", "preference": 0 if abs(m) < 0.03 else (2 if m > 0 else 1)}
        for i, m in enumerate(margin)
    ]
    labels_path = tmp_path / "judge.jsonl"
    labels_path.write_text("".join(json.dumps(row) + "\n" for row in labels))
    return (
        write_run(tmp_path / "a.parquet", quality_a),
        write_run(tmp_path / "b.jsonl", quality_b),
        labels_path,
    )


def test_fit_predict_cascade(tmp_path: Path, pair: tuple[Path, Path, Path]) -> None:
    a, b, labels = pair
    model = tmp_path / "judge.proxy"
    code, output = run(
        "proxy",
        "fit",
        a,
        "--versus",
        b,
        "--labels",
        labels,
        "--label-field",
        "preference",
        "--kind",
        "pairwise",
        "--draw-label",
        "0",
        "--context-field",
        "prompt",
        "--model-family",
        "linear",
        "-o",
        model,
    )
    assert code == 0, output
    assert "draws were left out of training" in output
    assert "chosen by 5-fold cross-validated log loss: linear(C=" in output
    assert model.is_file()

    predictions = tmp_path / "out" / "verdicts.csv"  # the parent directory is created
    code, output = run("proxy", "predict", a, "--versus", b, "--model", model, "-o", predictions)
    assert code == 0, output
    frame = pl.read_csv(predictions)
    assert frame.height == N
    assert frame.columns == ["id", "judge_prediction", "confidence", "proba_1", "proba_2", "judge_set"]
    assert set(frame["judge_prediction"].unique().to_list()) <= {1, 2}

    plan_path, curve_path = tmp_path / "for_judge.jsonl", tmp_path / "curve.csv"
    code, output = run(
        "proxy",
        "cascade",
        a,
        "--versus",
        b,
        "--model",
        model,
        "--budget",
        "0.3",
        "-o",
        plan_path,
        "--curve",
        curve_path,
    )
    assert code == 0, output
    assert f"{int(0.3 * N)} of {N} records need the judge" in output
    plan = pl.read_ndjson(plan_path)
    assert plan["needs_judge"].sum() == int(0.3 * N)
    kept, sent = plan.filter(~pl.col("needs_judge")), plan.filter(pl.col("needs_judge"))
    assert sent["confidence"].max() <= kept["confidence"].min()
    assert pl.read_csv(curve_path).height == N + 1

    code, output = run(
        "proxy", "cascade", a, "--versus", b, "--model", model, "--target-agreement", "0.95", "-o", plan_path
    )
    assert code == 0, output
    assert "target agreement 0.95" in output


def test_usage_errors_exit_2_with_a_clear_message(tmp_path: Path, pair: tuple[Path, Path, Path]) -> None:
    a, b, labels = pair
    model = tmp_path / "judge.proxy"
    fit = (
        "proxy",
        "fit",
        a,
        "--labels",
        labels,
        "--label-field",
        "preference",
        "--model-family",
        "linear",
        "-o",
        model,
    )
    code, output = run(*fit, "--kind", "pairwise", "--draw-label", "0")
    assert code == 2
    assert "needs features of pairs of outputs" in output
    code, output = run(*fit, "--kind", "binary")
    assert code == 2
    assert "binary labels need exactly 2 distinct values, got 3" in output

    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(line for line in labels.read_text().splitlines(keepends=True)[:-5]))
    args = (
        "proxy",
        "fit",
        a,
        "--versus",
        b,
        "--labels",
        partial,
        "--label-field",
        "preference",
        "--kind",
        "pairwise",
        "--draw-label",
        "0",
        "--model-family",
        "linear",
        "-o",
        model,
    )
    code, output = run(*args)
    assert code == 2
    assert f"5 of {N} records have no label" in output
    assert "'q235'" in output
    code, output = run(*args, "--skip-missing-labels")
    assert code == 0
    assert "5 records have no label and were left out" in output

    other_a = write_run(tmp_path / "other_a.parquet", np.zeros(N), config_hash="cfg-2")
    other_b = write_run(tmp_path / "other_b.parquet", np.ones(N), config_hash="cfg-2")
    code, output = run(
        "proxy", "predict", other_a, "--versus", other_b, "--model", model, "-o", tmp_path / "p.jsonl"
    )
    assert code == 2
    assert "scored with config hash cfg-2" in output
    assert "trained on scores with config hash cfg-1" in output
    code, output = run(
        "proxy", "predict", other_a, "--versus", b, "--model", model, "-o", tmp_path / "p.jsonl"
    )
    assert code == 2
    assert "metric 'm' was computed with different configs in A (cfg-2) and B (cfg-1)" in output
    code, output = run("proxy", "cascade", a, "--versus", b, "--model", model, "-o", tmp_path / "p.jsonl")
    assert code == 2
    assert "exactly one of --budget or --target-agreement" in output
    code, output = run("proxy", "predict", a, "--versus", b, "--model", model, "-o", tmp_path / "p.txt")
    assert code == 2
    assert "output must end in .jsonl, .parquet or .csv, got 'p.txt'" in output
    fake = tmp_path / "fake.proxy"
    fake.write_bytes(b"\x80\x04not a zip")
    code, output = run("proxy", "predict", a, "--model", fake, "-o", tmp_path / "p.jsonl")
    assert code == 2
    assert "not a judge proxy file" in output
