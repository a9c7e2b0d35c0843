"""The evalsuite dashboard: a Streamlit app over result files and their manifests.

Start it with ``evalsuite dashboard PATH [PATH ...]`` (needs the ``dashboard`` extra). Data loading and
filtering live in :mod:`dashboards.data`, per-metric evidence views in :mod:`dashboards.evidence`
(a registry: one function per metric family), statistics in :mod:`evalsuite.results`.
"""

from __future__ import annotations

from pathlib import Path

APP = Path(__file__).parent / "app.py"

__all__ = ["APP"]
