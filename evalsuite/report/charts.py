"""The report's charts as Vega-Lite specs (built with Altair, data embedded): a histogram per score and,
against a baseline, the mean differences with their confidence intervals."""

from __future__ import annotations

from typing import Any

import polars as pl

from evalsuite.errors import MissingDependencyError

__all__ = ["difference_spec", "histogram_spec"]

_WIDTH = 300
_HEIGHT = 140


def _altair() -> Any:
    try:
        import altair as alt
    except ImportError as error:
        raise MissingDependencyError(
            "the HTML report draws its charts with Altair: pip install 'evalsuite[report]' "
            "(or write --format markdown, which needs neither)"
        ) from error
    return alt


def histogram_spec(column: str, counts: pl.DataFrame, *, mean: float | None = None) -> dict[str, Any]:
    """Binned counts (``start, end, count, run``) as bars, runs overlaid in two colours; a rule at the mean."""
    alt = _altair()
    runs = counts["run"].unique(maintain_order=True).to_list()
    bars = (
        alt.Chart(alt.Data(values=counts.to_dicts()))
        .mark_bar(opacity=0.55 if len(runs) > 1 else 0.85, binSpacing=0)
        .encode(
            x=alt.X("start:Q", bin="binned", title=column, axis=alt.Axis(labelOverlap="greedy", tickCount=6)),
            x2="end:Q",
            y=alt.Y("count:Q", stack=None, title="records"),
            color=alt.Color(
                "run:N",
                sort=runs,
                scale=alt.Scale(range=["#2563eb", "#f97316"][: len(runs)]),
                legend=alt.Legend(orient="top", title=None) if len(runs) > 1 else None,
            ),
            tooltip=[
                "run:N",
                alt.Tooltip("start:Q", format=".4f"),
                alt.Tooltip("end:Q", format=".4f"),
                "count:Q",
            ],
        )
    )
    layers = [bars]
    if mean is not None and mean == mean:
        rule = (
            alt.Chart(alt.Data(values=[{"mean": mean}]))
            .mark_rule(color="#111827", strokeDash=[4, 3])
            .encode(x="mean:Q", tooltip=[alt.Tooltip("mean:Q", format=".4f")])
        )
        layers.append(rule)
    chart = alt.layer(*layers).properties(width=_WIDTH, height=_HEIGHT, title=column)
    spec: dict[str, Any] = chart.to_dict()
    return spec


def difference_spec(table: pl.DataFrame, confidence: float) -> dict[str, Any]:
    """Per score: the mean difference (B − A) with its bootstrap CI, coloured by the verdict; a rule at 0."""
    alt = _altair()
    rows = [row for row in table.to_dicts() if row["diff"] is not None]
    label = f"B − A (mean, {confidence * 100:g}% CI)"
    base = alt.Chart(alt.Data(values=rows)).encode(
        y=alt.Y("score:N", sort=None, title=None),
        color=alt.Color(
            "verdict:N",
            scale=alt.Scale(
                domain=["better", "worse", "not significant"], range=["#16a34a", "#dc2626", "#6b7280"]
            ),
            legend=alt.Legend(orient="top", title=None),
        ),
    )
    interval = base.mark_rule(strokeWidth=2).encode(x=alt.X("ci_low:Q", title=label), x2="ci_high:Q")
    points = base.mark_point(filled=True, size=60).encode(
        x="diff:Q",
        tooltip=[
            "score:N",
            alt.Tooltip("diff:Q", format="+.4f"),
            alt.Tooltip("ci_low:Q", format="+.4f"),
            alt.Tooltip("ci_high:Q", format="+.4f"),
            alt.Tooltip("p_value:Q", format=".3g"),
            "verdict:N",
        ],
    )
    zero = alt.Chart(alt.Data(values=[{"zero": 0.0}])).mark_rule(color="#111827").encode(x="zero:Q")
    chart = alt.layer(zero, interval, points).properties(width=2 * _WIDTH, height=22 * max(len(rows), 1))
    spec: dict[str, Any] = chart.to_dict()
    return spec
