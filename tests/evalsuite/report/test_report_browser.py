"""The HTML report in real headless Chromium (Debian's ``/usr/bin/chromium``) with the network blocked:
the page must draw every chart from what it inlines, and show the numbers ``evalsuite compare`` prints.

The screenshot goes to ``$EVALSUITE_TEST_ARTIFACTS/report`` (default: the test's tmp dir); with
``EVALSUITE_UPDATE_SCREENSHOTS=1`` it is also copied to ``docs/screenshots/report.png`` for the README.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.report.format import difference, interval, number, p_value
from tests.browser import CHROMIUM, REPO, needs_chromium, playwright_api

pytestmark = [pytest.mark.slow, needs_chromium]
expect = playwright_api.expect
WAIT_MS = 60_000


def test_report_renders_offline_with_compares_numbers(
    baseline: Path, candidate: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    page_file = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(candidate), "--versus", str(baseline), "-o", str(page_file)])
    assert result.exit_code == 0, result.output
    assert "bertscore: config hash differs" in result.output
    comparison_json = tmp_path / "comparison.json"
    result = runner.invoke(
        app, ["compare", str(baseline), str(candidate), "--worst", "0", "--json", str(comparison_json)]
    )
    assert result.exit_code == 0, result.output
    expected = json.loads(comparison_json.read_text())

    blocked: list[str] = []
    artifacts = Path(os.environ.get("EVALSUITE_TEST_ARTIFACTS", tmp_path)) / "report"
    artifacts.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND"],  # no name resolves
        )
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, offline=True)

        def refuse(route: object) -> None:
            url = route.request.url  # type: ignore[attr-defined]
            if url.startswith("file://"):
                route.continue_()  # type: ignore[attr-defined]
            else:
                blocked.append(url)
                route.abort()  # type: ignore[attr-defined]

        context.route("**/*", refuse)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_file.as_uri())
        page.wait_for_selector("body[data-charts-done='true']", timeout=WAIT_MS)

        # Every chart drew an SVG with marks: one histogram per score column, and the differences.
        charts = page.locator(".chart")
        assert charts.count() == 12
        assert page.locator(".chart[data-error]").count() == 0
        assert page.locator(".chart[data-rendered='true'] svg").count() == 12
        bars = page.locator(
            "[data-score='bertscore_f1'] svg path[aria-roledescription='bar'], "
            "[data-score='bertscore_f1'] svg .mark-rect path"
        )
        assert bars.count() > 10
        expect(page.locator("#chart-differences svg .mark-symbol.role-mark path")).to_have_count(11)

        # The comparison table holds compare's numbers, formatted as compare prints them.
        for row in expected["scores"]:
            cells = page.locator(f"#comparison-table tr[data-score='{row['score']}'] td")
            texts = cells.all_inner_texts()
            assert texts[3:8] == [
                number(row["mean_a"]),
                number(row["mean_b"]),
                difference(row["diff"]),
                interval(row["ci_low"], row["ci_high"], signed=True),
                p_value(row["p_value"]),
            ], row["score"]
            assert texts[8] == f"{row['wins']}/{row['ties']}/{row['losses']}"
            assert texts[9] == row["verdict"]
        expect(page.locator("#warnings")).to_contain_text("bertscore: config hash differs")
        # Evidence is drawn statically: SelfCheck's shaded sentences, semantic entropy's clusters.
        expect(page.locator("article[data-metric='semantic_entropy'] .evidence").first).to_contain_text(
            "meaning 1"
        )
        assert page.locator("article[data-metric='selfcheck_nli'] .evidence mark").count() > 0

        # The record table sorts on a click.
        header = page.locator("#records-table th", has_text="bertscore_f1")
        header.click()
        column = page.locator("#records-table th").all_inner_texts().index("bertscore_f1")
        values = [
            float(text)
            for text in page.locator(f"#records-table tbody td:nth-child({column + 1})").all_inner_texts()
        ]
        assert values == sorted(values)

        page.mouse.move(0, 0)
        page.set_viewport_size({"width": 1280, "height": 1700})
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        shot = artifacts / "report.png"
        page.screenshot(path=str(shot))
        assert not errors, errors
        browser.close()

    assert blocked == [], f"the report tried to reach the network: {blocked}"
    assert shot.stat().st_size > 20_000
    if os.environ.get("EVALSUITE_UPDATE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target / shot.name)
