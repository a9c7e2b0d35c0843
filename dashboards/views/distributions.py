"""Distributions: a histogram per score over the filtered records, and a breakdown by metadata."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, ui
from evalsuite.results import histogram

st.title("Distributions")
runs = ui.runs_or_stop()
run = ui.pick_run(runs)
filters = ui.sidebar_filters(run)
lazy = data.filtered(run, filters)
total = ui.memo(run, "records", lambda: data.count(run.table))
matching = data.count(lazy) if filters.active else total
ui.export_buttons(run, lazy, matching)

st.caption(
    f"**{run.label}** · {matching:,} of {total:,} records" + (" match the filters" if filters.active else "")
)
if not run.score_columns:
    st.info("This run has no score columns.")
    st.stop()
if matching == 0:
    st.warning("No record matches the filters.")
    st.stop()

bounds = ui.memo(run, "bounds", lambda: data.score_bounds(run))
stats = data.describe_scores(lazy, run.score_columns)
bins = st.sidebar.slider(
    "Histogram bins", min_value=5, max_value=100, value=30, step=5, key="distributions:bins"
)

for metric in run.metrics:
    if not metric.columns:
        continue
    arrow = "↑ higher is better" if metric.higher_is_better else "↓ lower is better"
    st.subheader(metric.name, anchor=False)
    st.caption(arrow)
    columns = st.columns(min(len(metric.columns), 3))
    for index, column in enumerate(metric.columns):
        with columns[index % len(columns)]:
            counts = histogram(lazy, column, bins=bins, bounds=bounds.get(column))
            row = stats.filter(pl.col("score") == column).row(0, named=True)
            if not row["n"]:
                st.markdown(f"**{column}**")
                st.caption("no values")
                continue
            chart = (
                alt.Chart(alt.Data(values=counts.to_dicts()))
                .mark_bar()
                .encode(
                    x=alt.X("start:Q", bin="binned", title=column),
                    x2="end:Q",
                    y=alt.Y("count:Q", title="records"),
                    tooltip=[
                        alt.Tooltip("start:Q", format=".3f"),
                        alt.Tooltip("end:Q", format=".3f"),
                        "count:Q",
                    ],
                )
                .properties(height=180, title=column)
            )
            st.altair_chart(chart, width="stretch")
            st.caption(
                f"n {row['n']:,} · mean {row['mean']:.4f} · median {row['median']:.4f} · "
                f"5–95% {row['p05']:.4f}–{row['p95']:.4f}"
            )

groupable = [
    name
    for name in run.metadata_columns
    if name in ui.memo(run, "categories", lambda: data.category_values(run))
]
if groupable:
    st.subheader("Where is it bad?", anchor=False)
    by = st.selectbox("Break down by", groupable, key=f"distributions:by:{run.path}")
    table = data.breakdown(lazy, by, run.score_columns)
    st.dataframe(
        table,
        hide_index=True,
        column_config={column: st.column_config.NumberColumn(format="%.4f") for column in run.score_columns},
    )
    st.caption("Mean of each score per group, over the filtered records (a tag list counts once per tag).")
