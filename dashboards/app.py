"""The evalsuite dashboard (Streamlit): ``evalsuite dashboard PATH [PATH ...]`` starts it.

Pages: Runs (provenance and summary), Distributions, Compare (two runs, paired), Records (explorer
with each metric's evidence). Runs come from ``EVALSUITE_DASHBOARD_PATHS`` (set by the CLI) or from
the script's arguments: ``streamlit run dashboards/app.py -- runs/``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboards import ui

HERE = Path(__file__).parent

st.set_page_config(page_title="evalsuite", page_icon="📊", layout="wide")

pages = [
    st.Page(
        HERE / "views" / "runs.py", title="Runs", icon=":material/list_alt:", url_path="runs", default=True
    ),
    st.Page(
        HERE / "views" / "distributions.py",
        title="Distributions",
        icon=":material/bar_chart:",
        url_path="distributions",
    ),
    st.Page(
        HERE / "views" / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"
    ),
    st.Page(HERE / "views" / "records.py", title="Records", icon=":material/search:", url_path="records"),
]
page = st.navigation(pages)
st.sidebar.caption("evalsuite dashboard")
ui.open_more_runs()
page.run()
