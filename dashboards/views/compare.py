"""Compare two runs record by record: paired differences with bootstrap CIs, Wilcoxon p-values,
win/tie/loss counts, a scatter of A against B and the records that got worse the most.

The numbers come from :func:`evalsuite.results.compare`, as ``evalsuite compare A B`` prints them.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from evalsuite.report.format import difference, interval, p_value

st.title("Compare two runs")
runs = ui.runs_or_stop()
if len(runs) < 2:
    st.info("Comparing needs two runs: start the dashboard with two result files or a directory of runs.")
    st.stop()

left, right = st.columns(2)
with left:
    run_a = ui.pick_run(runs, label="Run A (baseline)", key="compare:a", index=0, sidebar=False)
with right:
    run_b = ui.pick_run(runs, label="Run B (candidate)", key="compare:b", index=1, sidebar=False)
if run_a.path == run_b.path:
    st.warning("Pick two different runs.")
    st.stop()

comparison, error = ui.compare_runs(run_a, run_b)
if comparison is None:
    st.error(f"These runs cannot be compared: {error}")
    st.stop()

for line in comparison.warnings:
    st.warning(line, icon="⚠️")
if any("config" in line or "weights" in line for line in comparison.warnings):
    st.caption(
        "Different metric configs or weights: a difference may come from the config, not the model under test."
    )

n_pairs = comparison.paired.height
st.markdown(
    f"**{n_pairs:,}** records paired on `id` · B − A per score, 95% paired bootstrap CI (2,000 resamples, seed 0), "
    "two-sided Wilcoxon signed-rank p-value; wins/ties/losses count records where B is better/equal/worse."
)
table = comparison.table
st.dataframe(
    table.with_columns(
        pl.col("higher_is_better").map_elements(ui.direction, return_dtype=pl.String).alias("better")
    ).select(
        "score",
        "better",
        "verdict",
        "diff",
        "ci_low",
        "ci_high",
        "p_value",
        "wins",
        "ties",
        "losses",
        "mean_a",
        "mean_b",
        "n",
    ),
    hide_index=True,
    key="compare:table",
    height=35 * (table.height + 1) + 3,  # every score visible without scrolling
    column_config={
        "mean_a": st.column_config.NumberColumn("mean A", format="%.4f"),
        "mean_b": st.column_config.NumberColumn("mean B", format="%.4f"),
        "diff": st.column_config.NumberColumn("B − A", format="%+.4f"),
        "ci_low": st.column_config.NumberColumn("95% CI low", format="%+.4f"),
        "ci_high": st.column_config.NumberColumn("95% CI high", format="%+.4f"),
        "p_value": st.column_config.NumberColumn("p (Wilcoxon)", format="%.3g"),
        "verdict": st.column_config.TextColumn("verdict", width="medium"),
    },
)

if n_pairs == 0:
    st.info("The runs share no record id, so nothing can be paired.")
    st.stop()

column = st.selectbox("Score", comparison.score_columns, key=f"compare:score:{run_a.path}:{run_b.path}")
changes = comparison.changes(column)
higher = (
    run_b.higher_is_better(column)
    if column in run_b.results.higher_is_better
    else run_a.higher_is_better(column)
)
scatter_source = changes.sample(n=5000, seed=0) if changes.height > 5000 else changes
chart_left, chart_right = st.columns([3, 2])
with chart_left:
    if changes.height:
        both = pl.concat([changes["a"], changes["b"]])
        low, high = float(both.min()), float(both.max())  # type: ignore[arg-type]
        points = (
            alt.Chart(alt.Data(values=scatter_source.to_dicts()))
            .mark_circle(size=28, opacity=0.6)
            .encode(
                x=alt.X("a:Q", title=f"A · {column}", scale=alt.Scale(domain=[low, high], zero=False)),
                y=alt.Y("b:Q", title=f"B · {column}", scale=alt.Scale(domain=[low, high], zero=False)),
                color=alt.Color(
                    "verdict:N",
                    scale=alt.Scale(
                        domain=["B better", "tie", "B worse"], range=["#16a34a", "#9ca3af", "#dc2626"]
                    ),
                    title=None,
                ),
                tooltip=[
                    "id:N",
                    alt.Tooltip("a:Q", format=".4f"),
                    alt.Tooltip("b:Q", format=".4f"),
                    alt.Tooltip("diff:Q", format="+.4f"),
                ],
            )
            .transform_calculate(
                verdict="datum.improvement > 0 ? 'B better' : (datum.improvement < 0 ? 'B worse' : 'tie')"
            )
        )
        diagonal = (
            alt.Chart(alt.Data(values=[{"x": low, "y": low}, {"x": high, "y": high}]))
            .mark_line(color="#6b7280", strokeDash=[4, 4])
            .encode(
                x=alt.X("x:Q", scale=alt.Scale(domain=[low, high], zero=False)),
                y=alt.Y("y:Q", scale=alt.Scale(domain=[low, high], zero=False)),
            )
        )
        st.altair_chart(
            (diagonal + points).properties(height=360, title=f"{column}: A vs B"), width="stretch"
        )
        if scatter_source.height < changes.height:
            st.caption(f"{scatter_source.height:,} of {changes.height:,} pairs drawn (a seeded sample).")
with chart_right:
    row = table.filter(pl.col("score") == column).row(0, named=True)
    st.metric(
        f"{column} (B − A)",
        difference(row["diff"]),
        delta=row["verdict"],
        delta_color="off"
        if row["verdict"] == "not significant"
        else ("normal" if row["verdict"] == "better" else "inverse"),
        delta_arrow="off",
    )
    st.caption(
        f"{'↑ higher' if higher else '↓ lower'} is better · 95% CI "
        + interval(row["ci_low"], row["ci_high"], signed=True)
        + (f" · p = {p_value(row['p_value'])}" if row["p_value"] is not None else "")
    )
    st.markdown(f"**{row['wins']}** wins · **{row['ties']}** ties · **{row['losses']}** losses")

st.subheader("Got worse the most", anchor=False)
worst = changes.filter(pl.col("improvement") < 0).head(20)
if worst.height == 0:
    st.success(f"No record got worse on {column}.")
else:
    texts = {}
    for label, run in (("A", run_a), ("B", run_b)):
        if "prediction" in run.table.collect_schema().names():
            ids = worst["id"].to_list()
            texts[label] = (
                run.table.select(
                    pl.col("id").cast(pl.String), pl.col("prediction").alias(f"prediction {label}")
                )
                .filter(pl.col("id").is_in(ids))
                .collect()
            )
    shown = worst.select("id", "a", "b", "diff")
    for frame in texts.values():
        shown = shown.join(frame, on="id", how="left", maintain_order="left")
    st.dataframe(
        shown,
        hide_index=True,
        column_config={
            "a": st.column_config.NumberColumn("A", format="%.4f"),
            "b": st.column_config.NumberColumn("B", format="%.4f"),
            "diff": st.column_config.NumberColumn("B − A", format="%+.4f"),
        },
    )
    st.caption("Open a record in **Records** (search its id) to see its evidence.")
