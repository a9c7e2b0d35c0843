"""Streamlit pieces the pages share: the loaded runs, the run picker, the sidebar filters, export.

Runs are opened once per set of files (cached on their paths, sizes and modification times) and
kept as lazy tables; per-run values the widgets need (category values, score bounds, summary) are
computed once and memoised on the run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl
import streamlit as st

from dashboards import data
from evalsuite.errors import ConfigError
from evalsuite.manifest import manifest_path
from evalsuite.results import Comparison, compare, scan_results

T = TypeVar("T")
EXTRA_PATHS_KEY = "dashboard:extra_paths"
# Filter widgets keep their values across pages and reruns (persist_state="session").
PERSIST: Literal["session"] = "session"


def _stamp(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    stamps = []
    for path in paths:
        for file in (path, manifest_path(path)):
            try:
                stat = file.stat()
                stamps.append((str(file), stat.st_mtime_ns, stat.st_size))
            except OSError:
                stamps.append((str(file), 0, 0))
    return tuple(stamps)


@st.cache_resource(show_spinner="Opening runs…", max_entries=8)
def _open(
    paths: tuple[str, ...], stamp: tuple[tuple[str, int, int], ...]
) -> tuple[list[data.Run], list[data.RunProblem]]:
    del stamp  # part of the cache key only: a rewritten file is opened again
    return data.load_runs(paths)


def start_paths() -> list[str]:
    """Paths given to ``evalsuite dashboard`` (or to ``streamlit run app.py -- PATH``) plus those
    opened from the sidebar."""
    argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name == "app.py" else []
    paths = data.paths_from_environment(argv)
    return [*paths, *st.session_state.get(EXTRA_PATHS_KEY, [])]


def load() -> tuple[list[data.Run], list[data.RunProblem], str | None]:
    """The runs to show, the files that failed to open, and an error that stops everything (no path
    given, a path that does not exist, a directory with no runs)."""
    paths = start_paths()
    if not paths:
        return (
            [],
            [],
            (
                "No runs given. Start the dashboard with result files or directories: "
                "`evalsuite dashboard runs/` — or open one from the sidebar."
            ),
        )
    try:
        files = data.discover(paths)
    except ConfigError as error:
        return [], [], str(error)
    runs, problems = _open(tuple(str(path) for path in files), _stamp(files))
    return runs, problems, None


def runs_or_stop() -> list[data.Run]:
    """The runs, after showing any loading problem; stops the page when there is nothing to show."""
    runs, problems, error = load()
    if error:
        st.error(error, icon="🚫")
    for problem in problems:
        st.error(f"Could not open `{problem.path}`: {problem.message}", icon="⚠️")
    if not runs:
        if not error and not problems:
            st.info("No runs to show.")
        st.stop()
    return runs


def memo(run: data.Run, name: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per run (runs are cached objects, so the value lives as long as the run)."""
    if name not in run.memo:
        run.memo[name] = compute()
    value: T = run.memo[name]
    return value


def summary(run: data.Run) -> pl.DataFrame:
    return memo(run, "summary", run.results.summary)


def direction(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def pick_run(
    runs: Sequence[data.Run],
    *,
    label: str = "Run",
    key: str = "dashboard:run",
    index: int = 0,
    sidebar: bool = True,
) -> data.Run:
    """A run chooser; its choice persists across pages."""
    labels = [run.label for run in runs]
    if st.session_state.get(key) not in labels:
        st.session_state[key] = labels[min(index, len(labels) - 1)]
    container = st.sidebar if sidebar else st
    chosen = container.selectbox(label, labels, key=key, persist_state=PERSIST)
    return runs[labels.index(chosen)]


def _filter_key(run: data.Run, name: str) -> str:
    return f"filter:{run.path}:{name}"


def sidebar_filters(run: data.Run, *, search: bool = False) -> data.Filters:
    """Filter widgets in the sidebar for one run: metadata values, score ranges, and (on the record
    explorer) a text search. Returns what they select."""
    sidebar = st.sidebar
    sidebar.subheader("Filters")
    categories: dict[str, list[Any]] = {}
    for column, values in memo(run, "categories", lambda: data.category_values(run)).items():
        chosen = sidebar.multiselect(
            column,
            values,
            key=_filter_key(run, f"cat:{column}"),
            placeholder="all",
            persist_state=PERSIST,
        )
        if chosen:
            categories[column] = chosen
    bounds = memo(run, "bounds", lambda: data.score_bounds(run))
    ranged = sidebar.multiselect(
        "Score ranges on",
        [column for column in run.score_columns if column in bounds],
        key=_filter_key(run, "ranged"),
        placeholder="no score filter",
        persist_state=PERSIST,
    )
    ranges: dict[str, tuple[float, float]] = {}
    for column in ranged:
        low, high = bounds[column]
        if high <= low:
            sidebar.caption(f"{column}: every record scores {low:g}")
            continue
        chosen_range = sidebar.slider(
            column,
            min_value=float(low),
            max_value=float(high),
            value=(float(low), float(high)),
            step=(high - low) / 200,
            key=_filter_key(run, f"range:{column}"),
            persist_state=PERSIST,
        )
        ranges[column] = (float(chosen_range[0]), float(chosen_range[1]))
    text = ""
    if search:
        text = sidebar.text_input(
            "Search id, prompt, prediction",
            key=_filter_key(run, "search"),
            placeholder="words to find",
            persist_state=PERSIST,
        )
    return data.Filters(categories=categories, ranges=ranges, search=text)


def export_buttons(run: data.Run, lazy: pl.LazyFrame, rows: int) -> None:
    """Download buttons for the filtered table; the file is built only when clicked."""
    stem = run.path.name.split(".")[0] + ("-filtered" if rows else "")
    st.sidebar.subheader("Export")
    st.sidebar.caption(f"{rows:,} filtered records")
    columns = st.sidebar.columns(2)
    columns[0].download_button(
        "CSV",
        lambda: data.export_bytes(lazy, "csv"),
        file_name=f"{stem}.csv",
        mime="text/csv",
        key=f"export:csv:{run.path}",
        on_click="ignore",
        icon=":material/download:",
    )
    columns[1].download_button(
        "Parquet",
        lambda: data.export_bytes(lazy, "parquet"),
        file_name=f"{stem}.parquet",
        mime="application/vnd.apache.parquet",
        key=f"export:parquet:{run.path}",
        on_click="ignore",
        icon=":material/download:",
    )


def open_more_runs() -> None:
    """A sidebar box to open more result files or directories while the dashboard runs."""
    with st.sidebar.expander("Open more runs"):
        with st.form("dashboard:open", clear_on_submit=True, border=False):
            path = st.text_input("Result file or directory", placeholder="runs/ or out/scores.parquet")
            submitted = st.form_submit_button("Open")
        if submitted and path.strip():
            candidate = os.path.expanduser(path.strip())
            try:
                data.discover([candidate])
            except ConfigError as error:
                st.error(str(error))
            else:
                st.session_state[EXTRA_PATHS_KEY] = [*st.session_state.get(EXTRA_PATHS_KEY, []), candidate]
                st.rerun()


@st.cache_resource(show_spinner="Comparing runs…", max_entries=16)
def comparison(
    path_a: str, path_b: str, stamp: tuple[tuple[str, int, int], ...]
) -> tuple[Comparison | None, str | None]:
    """:func:`evalsuite.results.compare` of two result files, as ``evalsuite compare A B`` computes it."""
    del stamp
    try:
        return compare(scan_results(path_a).scores(), scan_results(path_b).scores()), None
    except ConfigError as error:
        return None, str(error)


def compare_runs(run_a: data.Run, run_b: data.Run) -> tuple[Comparison | None, str | None]:
    return comparison(str(run_a.path), str(run_b.path), _stamp([run_a.path, run_b.path]))
