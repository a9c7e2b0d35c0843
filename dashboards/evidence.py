"""Per-metric evidence views of one record in the dashboard.

Most families' evidence is static HTML, built once in :mod:`evalsuite.report.evidence` for both the
dashboard and the shareable report (:func:`static_view` shows it). A family that needs widgets
registers a Streamlit view here instead, as BERTScore's on-demand alignment heatmap does::

    @evidence_view("my_metric")
    def my_metric_view(context: EvidenceContext) -> None:
        scores_line(context)
        st.json(context.detail("spans"))

Metrics with neither get :func:`scores_line` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from dashboards.data import MetricInfo, Run
from evalsuite.report.evidence import STATIC_EVIDENCE, evidence_html

EvidenceView = Callable[["EvidenceContext"], None]
EVIDENCE_VIEWS: dict[str, EvidenceView] = {}


@dataclass(frozen=True)
class EvidenceContext:
    """What a view gets: the whole record, the run it comes from, and the metric to show."""

    record: Mapping[str, Any]
    run: Run
    metric: MetricInfo

    def detail(self, name: str) -> Any:
        """The metric's evidence column ``<metric>_<name>`` for this record (None when absent)."""
        return self.record.get(f"{self.metric.name}_{name}")

    @property
    def key(self) -> str:
        """A widget-key prefix unique to this record and metric."""
        return f"evidence:{self.run.path}:{self.record.get('id')}:{self.metric.name}"


def evidence_view(*names: str) -> Callable[[EvidenceView], EvidenceView]:
    """Register a view for one or more metric names (a family sharing an evidence format)."""

    def register(view: EvidenceView) -> EvidenceView:
        for name in names:
            EVIDENCE_VIEWS[name] = view
        return view

    return register


def render_evidence(context: EvidenceContext) -> None:
    """Draw the metric's registered view, or its scores alone."""
    name = context.metric.name
    view = EVIDENCE_VIEWS.get(name) or (static_view if name in STATIC_EVIDENCE else scores_line)
    view(context)


# -- tables and charts --------------------------------------------------------------------------------------


def claims_table(claims: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Factuality claims as a table, worst claim first."""
    rows = [
        {
            "claim": str(claim.get("claim", "")),
            "score": claim.get("score"),
            "supported by": str(claim.get("support", "")),
            "P(entail)": claim.get("entailment"),
            "most contradicted by": str(claim.get("contradicting", "")),
            "P(contradict)": claim.get("contradiction"),
        }
        for claim in claims
    ]
    schema = {
        "claim": pl.String,
        "score": pl.Float64,
        "supported by": pl.String,
        "P(entail)": pl.Float64,
        "most contradicted by": pl.String,
        "P(contradict)": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort("score", nulls_last=True)


def alignment_chart(alignment: Mapping[str, Any]) -> alt.Chart:
    """Heatmap of BERTScore's token cosine similarities (prediction tokens down, reference across);
    each prediction token's greedy match is outlined."""
    prediction, reference = alignment["prediction_tokens"], alignment["reference_tokens"]
    similarity = alignment["similarity"]
    rows = []
    for i, token in enumerate(prediction):
        best = max(range(len(reference)), key=lambda j: similarity[i][j]) if reference else -1
        for j, other in enumerate(reference):
            rows.append(
                {
                    "prediction token": f"{i:02d} {token}",
                    "reference token": f"{j:02d} {other}",
                    "cosine": round(float(similarity[i][j]), 4),
                    "best match": j == best,
                }
            )
    data = alt.Data(values=rows)
    base = alt.Chart(data).encode(
        x=alt.X(
            "reference token:N",
            sort=None,
            title="reference",
            axis=alt.Axis(labelOverlap=False, labelAngle=-90),
        ),
        y=alt.Y("prediction token:N", sort=None, title="prediction", axis=alt.Axis(labelOverlap=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("cosine:Q", scale=alt.Scale(scheme="blues")),
        tooltip=["prediction token:N", "reference token:N", "cosine:Q"],
    )
    best = base.transform_filter(alt.datum["best match"]).mark_rect(
        fill=None, stroke="#dc2626", strokeWidth=2
    )
    cell = 24
    return (cells + best).properties(
        width=cell * max(len(reference), 8), height=cell * max(len(prediction), 5)
    )


# -- Streamlit views ----------------------------------------------------------------------------------------


def scores_line(context: EvidenceContext) -> None:
    """The metric's scores for this record, with its direction; the default view."""
    arrow = "↑ higher is better" if context.metric.higher_is_better else "↓ lower is better"
    values = []
    for column in context.metric.columns:
        value = context.record.get(column)
        text = "–" if value is None or value != value else f"{float(value):.4g}"
        values.append(f"`{column.removeprefix(context.metric.name + '_')}` **{text}**")
    st.markdown(" · ".join(values) + f"  \n:gray[{arrow}]" if values else f":gray[{arrow}]")


def static_view(context: EvidenceContext) -> None:
    """The scores, then the evidence as the shareable report shows it (:mod:`evalsuite.report.evidence`)."""
    scores_line(context)
    body = evidence_html(context.record, context.metric)
    if body:
        st.markdown(body, unsafe_allow_html=True)
    else:
        kept = ", ".join(f"`{column}`" for column in context.metric.detail_columns) or "evidence"
        st.caption(f"No {kept} for this record (not scored, or the run did not keep it).")


@st.cache_resource(show_spinner=False)
def _runtime() -> Any:
    from evalsuite.runtime import Runtime

    return Runtime(device="auto")


@st.cache_data(show_spinner=False, max_entries=256)
def _alignment(prediction: str, reference: str, model: str, num_layers: int | None) -> dict[str, Any]:
    from metrics.bertscore import token_alignment

    return token_alignment(prediction, reference, _runtime(), model=model, num_layers=num_layers)


@evidence_view("bertscore")
def bertscore_view(context: EvidenceContext) -> None:
    """On demand: the token-alignment heatmap against one reference, computed through the runtime."""
    from evalsuite.errors import EvalsuiteError

    scores_line(context)
    prediction = context.record.get("prediction")
    references = context.record.get("references")
    if isinstance(references, str):
        references = [references]
    if not isinstance(prediction, str) or not references:
        st.caption("This record has no prediction or references to align.")
        return
    choice = 0
    if len(references) > 1:
        choice = st.selectbox(
            "Reference",
            range(len(references)),
            format_func=lambda i: f"{i + 1}: {str(references[i])[:80]}",
            key=f"{context.key}:reference",
        )
    model = str(context.metric.config.get("model", "minilm"))
    layers = context.metric.config.get("num_layers")
    state_key = f"{context.key}:alignment:{choice}"
    if st.button("Show token alignment", key=f"{context.key}:align", help=f"Runs {model} on this record."):
        with st.spinner(f"Embedding tokens with {model}…"):
            try:
                st.session_state[state_key] = _alignment(
                    prediction, str(references[choice]), model, int(layers) if layers is not None else None
                )
            except EvalsuiteError as error:
                st.error(f"Cannot compute the alignment: {error}")
    alignment = st.session_state.get(state_key)
    if alignment is None:
        return
    st.altair_chart(alignment_chart(alignment), width="content")
    extras = [key for key in ("idf", "rescale_with_baseline") if context.metric.config.get(key)]
    note = f" (the run's scores also apply {' and '.join(extras)})" if extras else ""
    st.caption(
        f"Cosine similarity of each prediction token (rows) to each reference token (columns); red outline: "
        f"the greedy match. This pair: precision {alignment['precision']:.4f}, recall {alignment['recall']:.4f}, "
        f"F1 {alignment['f1']:.4f} without idf or rescaling{note}."
    )
