"""``evalsuite compare`` and ``evalsuite dashboard``: run for real (typer's runner; a subprocess for the server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.results import Results, compare, scan_results

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def write_run(path: Path, values: list[float], *, idf: bool = False, higher: bool = True) -> Path:
    table = pl.DataFrame(
        {"id": [f"r{i}" for i in range(len(values))], "prediction": ["x"] * len(values), "m_score": values}
    )
    manifest = {
        "metrics": [
            {
                "name": "m",
                "config": {"idf": idf},
                "config_hash": f"hash-{idf}",
                "columns": ["m_score"],
                "higher_is_better": higher,
            }
        ]
    }
    Results(table, score_columns=["m_score"], manifest=manifest).write(path)
    return path


# compare ---------------------------------------------------------------------------------------------------


def test_compare_prints_the_comparison_and_writes_json(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a.parquet", [0.5, 0.6, 0.7, 0.8, 0.55, 0.65])
    b = write_run(tmp_path / "b.jsonl", [0.6, 0.7, 0.75, 0.7, 0.65, 0.7])
    code, output = run("compare", str(a), str(b), "--json", str(tmp_path / "cmp.json"))
    assert code == 0, output
    row = compare(scan_results(a).scores(), scan_results(b).scores()).table.row(0, named=True)
    line = next(line for line in output.splitlines() if line.startswith("│ m_score"))
    assert f"{row['mean_a']:.4f}" in line
    assert f"{row['mean_b']:.4f}" in line
    assert f"{row['diff']:+.4f}" in line
    assert f"{row['ci_low']:+.4f} – {row['ci_high']:+.4f}" in line
    assert f"{row['wins']}/{row['ties']}/{row['losses']}" in line
    assert "Wilcoxon" in output
    assert "records that got worse the most" in output
    assert "r3" in output
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert report["paired"] == 6
    assert report["scores"][0]["diff"] == pytest.approx(row["diff"])


def test_compare_warns_on_different_configs_and_fails_if_worse(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a.parquet", [0.1] * 8, higher=False)
    b = write_run(tmp_path / "b.parquet", [0.2, 0.3, 0.25, 0.2, 0.3, 0.4, 0.2, 0.3], idf=True, higher=False)
    code, output = run("compare", str(a), str(b))
    assert code == 0
    assert "warning: m: config hash differs (A hash-False, B hash-True): idf False → True" in output
    assert "worse" in output
    code, output = run("compare", str(a), str(b), "--fail-if-worse")
    assert code == 1
    assert "got worse: m_score" in output
    code, _ = run("compare", str(b), str(a), "--fail-if-worse")
    assert code == 0


@pytest.mark.parametrize(
    ("problem", "message"),
    [("missing", "does not exist"), ("corrupt", "not valid JSON"), ("score", "unknown score column")],
)
def test_compare_usage_errors_exit_2(tmp_path: Path, problem: str, message: str) -> None:
    a = write_run(tmp_path / "a.parquet", [0.1, 0.2])
    b = write_run(tmp_path / "b.parquet", [0.2, 0.1])
    args = ["compare", str(a), str(b)]
    if problem == "missing":
        args[2] = str(tmp_path / "nope.parquet")
    elif problem == "corrupt":
        (tmp_path / "b.manifest.json").write_text("{")
    else:
        args += ["-s", "other_score"]
    code, output = run(*args)
    assert code == 2
    assert message in output


# dashboard -------------------------------------------------------------------------------------------------


def test_dashboard_usage_errors_exit_2(tmp_path: Path) -> None:
    code, output = run("dashboard", str(tmp_path / "missing"))
    assert code == 2
    assert "does not exist" in output
    code, output = run("dashboard", str(tmp_path))
    assert code == 2
    assert "no runs found under" in output
    code, output = run("dashboard")
    assert code == 2
    assert "Missing argument" in output


def test_dashboard_names_the_extra_when_streamlit_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dashboards.server

    real_find_spec = dashboards.server.importlib.util.find_spec
    monkeypatch.setattr(
        dashboards.server.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "streamlit" else real_find_spec(name, *args),
    )
    code, output = run("dashboard", str(write_run(tmp_path / "a.parquet", [0.1])))
    assert code == 2
    assert "pip install 'evalsuite[dashboard]'" in output


def test_dashboard_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, output = run("dashboard", str(write_run(tmp_path / "a.parquet", [0.1])), "--port", str(port))
    assert code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in output


def test_dashboard_warns_about_a_corrupt_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboards.server

    write_run(tmp_path / "good.parquet", [0.1])
    write_run(tmp_path / "bad.parquet", [0.1])
    (tmp_path / "bad.manifest.json").write_text("[")
    served: list[object] = []
    monkeypatch.setattr(dashboards.server, "serve", lambda paths, **options: served.append(paths) or 0)
    code, output = run("dashboard", str(tmp_path))
    assert code == 0, output
    assert "2 runs found" in output
    assert "warning: manifest" in output
    assert "not valid JSON" in output
    assert served == [[tmp_path]]


@pytest.mark.slow
def test_dashboard_serves_on_localhost_and_stops_on_sigterm(tmp_path: Path) -> None:
    write_run(tmp_path / "a.parquet", [0.1, 0.2])
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "evalsuite", "dashboard", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            if line.startswith("Dashboard: "):
                url = line.split()[1]
        assert url is not None, "no URL printed"
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"<html" in response.read().lower()
        # SIGTERM, as a service manager stops it (a test runner may have SIGINT ignored); the
        # Streamlit child must stop with it, not linger.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
