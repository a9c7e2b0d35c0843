"""What the browser tests share: Debian's Chromium (never a downloaded browser) and Playwright.

``.ci/run`` installs ``/usr/bin/chromium`` when missing; without it (or without playwright, the dev
extra) the browser tests skip with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).parents[1]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)",
)
playwright_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
