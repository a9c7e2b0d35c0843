"""Generated runs for the report tests: the dashboard tests' runs (real result files and manifests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboards.conftest import write_run

IDF_BERTSCORE = {
    "model": "minilm",
    "num_layers": None,
    "idf": True,
    "rescale_with_baseline": False,
    "lang": "en",
}


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    return write_run(tmp_path / "runs" / "main.parquet", n=60, seed=1)


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    """Run B: the same records, scores shifted and jittered, BERTScore with idf (another config hash)."""
    return write_run(
        tmp_path / "runs" / "pr.parquet", n=60, seed=1, shift=0.03, noise=0.04, bertscore_config=IDF_BERTSCORE
    )
