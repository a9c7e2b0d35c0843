"""The real dashboard in a real browser: ``evalsuite dashboard`` on a free localhost port, driven by
Playwright with Debian's Chromium (``/usr/bin/chromium``; no browser download).

Screenshots of each page go to ``$EVALSUITE_TEST_ARTIFACTS/dashboard`` (default: the test's tmp dir);
with ``EVALSUITE_UPDATE_SCREENSHOTS=1`` they are also copied to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dashboards.server import free_port
from evalsuite.results import compare, scan_results
from tests.browser import CHROMIUM, REPO, needs_chromium, playwright_api

pytestmark = [
    pytest.mark.slow,
    pytest.mark.model,  # the record explorer's BERTScore heatmap loads the packaged MiniLM
    needs_chromium,
]
expect = playwright_api.expect
# Streamlit draws a page piece by piece; on a loaded CI machine charts can lag the script by seconds,
# so visible content is awaited (Playwright's auto-retrying expect), never sampled once.
WAIT_MS = 60_000


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("EVALSUITE_TEST_ARTIFACTS")
    folder = Path(root) / "dashboard" if root else tmp_path / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def runs(run_factory: Callable[..., Path]) -> tuple[Path, Path]:
    a = run_factory("runs/baseline.parquet", n=60, seed=1)
    b = run_factory(
        "runs/candidate.parquet",
        n=60,
        seed=1,
        shift=0.03,
        noise=0.04,
        bertscore_config={
            "model": "minilm",
            "num_layers": None,
            "idf": True,
            "rescale_with_baseline": False,
            "lang": "en",
        },
    )
    return a, b


@pytest.fixture
def dashboard_url(runs: tuple[Path, Path], tmp_path: Path) -> Iterator[str]:
    """``evalsuite dashboard RUNS --port N`` as a user starts it; stopped with SIGTERM afterwards."""
    port = free_port()
    log = (tmp_path / "dashboard.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "evalsuite", "dashboard", str(runs[0].parent), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while f"Dashboard: {url}" not in (tmp_path / "dashboard.log").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not start:\n{(tmp_path / 'dashboard.log').read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _settle(page: object) -> None:
    """Wait until Streamlit has finished running the page's script."""
    page.wait_for_selector("h1", timeout=60_000)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000
    )
    page.wait_for_timeout(1_000)  # type: ignore[attr-defined]


def _shoot(page: object, artifacts: Path, name: str, height: int = 1000) -> Path:
    """Screenshot of the viewport (Streamlit scrolls inside it), ``height`` pixels tall."""
    page.set_viewport_size({"width": 1400, "height": height})  # type: ignore[attr-defined]
    page.wait_for_timeout(800)  # type: ignore[attr-defined]
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    return path


def test_every_page_in_chromium(dashboard_url: str, runs: tuple[Path, Path], artifacts: Path) -> None:
    summary = (
        scan_results(runs[0]).summary().filter(scan_results(runs[0]).summary()["score"] == "bertscore_f1")
    )
    mean_f1 = f"{summary['mean'][0]:.4f}"
    comparison = compare(scan_results(runs[0]).scores(), scan_results(runs[1]).scores()).table
    diff_precision = f"{comparison['diff'][0]:+.4f}"
    shots = []
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        # Runs: provenance and the summary table.
        page.goto(dashboard_url)
        _settle(page)
        assert page.locator("h1").first.inner_text() == "Runs"
        expect(page.get_by_role("heading", name="baseline.parquet")).to_be_visible(timeout=WAIT_MS)
        summary_table = page.locator("[data-testid='stDataFrame'] table").nth(1)
        expect(summary_table).to_contain_text("bertscore_f1", timeout=WAIT_MS)
        # The grid draws on a canvas; its accessible table holds the unformatted numbers.
        expect(summary_table).to_contain_text(repr(summary["mean"][0]), timeout=WAIT_MS)
        expect(page.get_by_text("cpu / float32").first).to_be_visible(timeout=WAIT_MS)
        shots.append(_shoot(page, artifacts, "runs"))

        # Distributions: one chart per score, a metadata filter.
        page.goto(f"{dashboard_url}/distributions")
        _settle(page)
        expect(page.locator("[data-testid='stVegaLiteChart']")).to_have_count(11, timeout=WAIT_MS)
        expect(page.get_by_role("heading", name="bertscore")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text(f"mean {mean_f1}").first).to_be_visible(timeout=WAIT_MS)
        sidebar = page.locator("section[data-testid='stSidebar']")
        sidebar.locator("[data-testid='stMultiSelect']").filter(has_text="model").first.click()
        page.get_by_role("option", name="model-a").click()
        page.keyboard.press("Escape")
        _settle(page)
        page.get_by_text("30 of 60 records match the filters").wait_for(timeout=30_000)
        shots.append(_shoot(page, artifacts, "distributions", height=1150))

        # The filter follows to the record explorer (persist_state="session").
        sidebar.get_by_role("link", name="Records").click()
        _settle(page)
        page.get_by_text("30 of 60 records match the filters and search").wait_for(timeout=30_000)

        # Compare: the config warning, the comparison table, the chosen score's difference.
        page.goto(f"{dashboard_url}/compare")
        _settle(page)
        expect(page.get_by_text("bertscore: config hash differs")).to_be_visible(timeout=WAIT_MS)
        comparison_table = page.locator("[data-testid='stDataFrame'] table").first
        expect(comparison_table).to_contain_text("bertscore_precision", timeout=WAIT_MS)
        expect(comparison_table).to_contain_text("p (Wilcoxon)", timeout=WAIT_MS)
        expect(page.get_by_text(diff_precision).first).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("[data-testid='stVegaLiteChart']")).to_have_count(1, timeout=WAIT_MS)
        shots.append(_shoot(page, artifacts, "compare", height=1650))

        # Records: a record's evidence, and the BERTScore heatmap computed on demand.
        page.goto(f"{dashboard_url}/records")
        _settle(page)
        page.get_by_role("tab", name="Scores and evidence").click()
        expect(page.get_by_text("meaning 1").first).to_be_visible(timeout=WAIT_MS)
        page.get_by_role("button", name="Show token alignment").click()
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=180_000)
        _settle(page)
        expect(page.get_by_text("Cosine similarity of each prediction token")).to_be_visible(timeout=WAIT_MS)
        page.mouse.move(0, 0)  # no tooltip in the picture
        page.set_viewport_size({"width": 1400, "height": 1500})
        page.get_by_role("heading", name="Record r000").evaluate("element => element.scrollIntoView()")
        shots.append(_shoot(page, artifacts, "records", height=1500))
        browser.close()

    for shot in shots:
        assert shot.stat().st_size > 10_000, shot
    if os.environ.get("EVALSUITE_UPDATE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, target / shot.name)
