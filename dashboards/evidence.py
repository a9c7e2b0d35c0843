"""Per-metric evidence views of one record: one small function per metric family, in a registry.

A view receives an :class:`EvidenceContext` (the record, its run, the metric) and draws with
Streamlit. The HTML it shows is built by pure functions (``*_html``) that escape every text, so they
are tested without Streamlit. Adding a family's view is one function::

    @evidence_view("my_metric")
    def my_metric_view(context: EvidenceContext) -> None:
        scores_line(context)
        st.json(context.detail("spans"))

Metrics without a registered view get :func:`scores_line` only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from dashboards.data import MetricInfo, Run

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
    EVIDENCE_VIEWS.get(context.metric.name, scores_line)(context)


# -- pure HTML builders -----------------------------------------------------------------------------------


def _bad_color(badness: float) -> str:
    """Red with opacity growing with ``badness`` in [0, 1]."""
    alpha = 0.08 + 0.5 * min(max(badness, 0.0), 1.0)
    return f"rgba(220, 38, 38, {alpha:.2f})"


def _signed_color(score: float) -> str:
    """Green for support (score > 0), red for contradiction (score < 0), in [-1, 1]."""
    alpha = 0.08 + 0.5 * min(abs(score), 1.0)
    return f"rgba(22, 163, 74, {alpha:.2f})" if score >= 0 else f"rgba(220, 38, 38, {alpha:.2f})"


def _mark(text: str, color: str, title: str) -> str:
    return (
        f'<mark style="background:{color};padding:1px 2px;border-radius:3px" '
        f'title="{html.escape(title, quote=True)}">{html.escape(text)}</mark>'
    )


def highlight_spans(
    text: str, spans: Sequence[Mapping[str, Any]], colors: Mapping[str, str] | None = None
) -> str:
    """``text`` as escaped HTML with each ``{type, start, end}`` span marked and labelled by its type.

    Overlapping or out-of-range spans are skipped (the PII metric never produces them).

    >>> highlight_spans("mail a@b.co now", [{"type": "email", "start": 5, "end": 11}])[:14]
    'mail <mark sty'
    """
    colors = colors or {}
    pieces: list[str] = []
    position = 0
    for span in sorted(spans, key=lambda item: int(item["start"])):
        start, end = int(span["start"]), int(span["end"])
        if start < position or end > len(text) or start >= end:
            continue
        label = str(span.get("type", ""))
        pieces.append(html.escape(text[position:start]))
        pieces.append(
            _mark(text[start:end], colors.get(label, "rgba(250, 204, 21, 0.55)"), label)
            + f'<sup style="font-size:0.7em;color:#92400e">{html.escape(label)}</sup>'
        )
        position = end
    pieces.append(html.escape(text[position:]))
    return "".join(pieces).replace("\n", "<br>")


def scored_sentences_html(sentences: Sequence[Mapping[str, Any]], *, higher_is_worse: bool = True) -> str:
    """Sentences shaded by their score (darker = worse), each followed by its score.

    >>> "0.90" in scored_sentences_html([{"sentence": "It is Lyon.", "score": 0.9}])
    True
    """
    parts = []
    for item in sentences:
        score = item.get("score")
        value = float(score) if score is not None else float("nan")
        badness = value if higher_is_worse else 1 - value
        color = _bad_color(badness) if value == value else "transparent"
        label = "–" if value != value else f"{value:.2f}"
        parts.append(
            _mark(str(item.get("sentence", "")), color, f"score {label}")
            + f' <span style="font-size:0.75em;color:#6b7280">[{label}]</span>'
        )
    return " ".join(parts)


def token_logprobs_html(tokens: Sequence[Mapping[str, Any]]) -> str:
    """Tokens shaded by how unlikely the model found them (log-probability; darker = less likely)."""
    parts = []
    for item in tokens:
        logprob = float(item.get("logprob") or 0.0)
        badness = min(-logprob / 10.0, 1.0)  # e^-10: as unlikely as it gets for display
        token = str(item.get("token", ""))
        parts.append(_mark(token, _bad_color(badness), f"log p = {logprob:.2f}"))
    return "".join(parts)


_CLUSTER_COLORS = ("#dbeafe", "#dcfce7", "#fef9c3", "#fce7f3", "#ede9fe", "#ffedd5", "#cffafe", "#f3f4f6")


def clusters_html(samples: Sequence[str], cluster_ids: Sequence[int], prediction: str | None = None) -> str:
    """Samples grouped by meaning cluster, largest cluster first; the prediction, when it is one of
    the samples, is marked.

    >>> clusters_html(["Paris.", "It is Paris.", "Lyon."], [0, 0, 1]).count("<li")
    3
    """
    groups: dict[int, list[int]] = {}
    for index, cluster in enumerate(cluster_ids):
        groups.setdefault(int(cluster), []).append(index)
    blocks = []
    for rank, (_cluster, members) in enumerate(
        sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    ):
        color = _CLUSTER_COLORS[rank % len(_CLUSTER_COLORS)]
        items = "".join(
            f"<li>{html.escape(str(samples[i]) if i < len(samples) else '(missing sample)')}"
            + (
                " <b>(= prediction)</b>"
                if prediction is not None and i < len(samples) and samples[i] == prediction
                else ""
            )
            + "</li>"
            for i in members
        )
        share = len(members) / max(len(cluster_ids), 1)
        blocks.append(
            f'<div style="background:{color};border-radius:6px;padding:6px 10px;margin:4px 0">'
            f"<b>meaning {rank + 1}</b> · {len(members)} of {len(cluster_ids)} samples ({share:.0%})"
            f'<ul style="margin:4px 0 0 0">{items}</ul></div>'
        )
    return "".join(blocks)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def source_with_chunks_html(source: str, supporting: Sequence[str], contradicting: Sequence[str]) -> str:
    """The source with supporting chunks marked green and contradicting ones red (where they occur
    verbatim; a chunk found in both lists is marked as contradicting)."""
    marks: list[tuple[int, int, str, str]] = []
    for chunks, color, label in (
        (contradicting, "rgba(220, 38, 38, 0.35)", "contradicts a claim"),
        (supporting, "rgba(22, 163, 74, 0.35)", "supports a claim"),
    ):
        for chunk in chunks:
            start = source.find(chunk.strip()) if chunk.strip() else -1
            if start < 0:
                continue
            end = start + len(chunk.strip())
            if any(start < other_end and other_start < end for other_start, other_end, _, _ in marks):
                continue
            marks.append((start, end, color, label))
    pieces: list[str] = []
    position = 0
    for start, end, color, label in sorted(marks):
        pieces.append(html.escape(source[position:start]))
        pieces.append(_mark(source[start:end], color, label))
        position = end
    pieces.append(html.escape(source[position:]))
    return "".join(pieces).replace("\n", "<br>")


def judge_distribution_html(distribution: Sequence[Mapping[str, Any]]) -> str:
    """An LLM judge's probability per answer label as labelled bars, the most likely one in bold.

    >>> "<b>4</b>" in judge_distribution_html([{"label": "3", "probability": 0.2}, {"label": "4", "probability": 0.8}])
    True
    """
    if not distribution:
        return ""
    best = max(range(len(distribution)), key=lambda i: float(distribution[i].get("probability") or 0.0))
    rows = []
    for i, item in enumerate(distribution):
        probability = float(item.get("probability") or 0.0)
        label = html.escape(str(item.get("label", "")))
        shown = f"<b>{label}</b>" if i == best else label
        rows.append(
            f'<div style="display:flex;align-items:center;gap:6px">'
            f'<span style="width:4em;text-align:right">{shown}</span>'
            f'<span style="background:rgba(59, 130, 246, 0.6);height:0.9em;width:{probability * 12:.2f}em"></span>'
            f"<span>{probability:.2f}</span></div>"
        )
    return "".join(rows)


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


def _no_evidence(context: EvidenceContext, name: str) -> None:
    st.caption(
        f"No `{context.metric.name}_{name}` evidence for this record (not scored, or the run did not keep it)."
    )


_SENTENCE_CAPTIONS = {
    "selfcheck_nli": "Darker red: the model's own samples contradict the sentence more (0 = consistent, 1 = contradicted).",
    "toxicity": "Darker red: the sentence alone scores higher (the overall, unsafe or only column).",
}


@evidence_view(*_SENTENCE_CAPTIONS)
def sentences_view(context: EvidenceContext) -> None:
    """Each sentence of the prediction shaded by its own score (contradiction by the samples, toxicity)."""
    scores_line(context)
    sentences = context.detail("sentences")
    if not sentences:
        _no_evidence(context, "sentences")
        return
    st.markdown(scored_sentences_html(sentences), unsafe_allow_html=True)
    st.caption(_SENTENCE_CAPTIONS[context.metric.name])


@evidence_view("factuality")
def factuality_view(context: EvidenceContext) -> None:
    """Claims with their best supporting and most contradicting source chunk; the source marked."""
    scores_line(context)
    claims = context.detail("claims")
    if not claims:
        _no_evidence(context, "claims")
        return
    for claim in sorted(claims, key=lambda item: float(item.get("score") or 0.0)):
        score = float(claim.get("score") or 0.0)
        st.markdown(
            _mark(str(claim.get("claim", "")), _signed_color(score), f"score {score:.2f}")
            + f" <b>{score:+.2f}</b><br>"
            + f'<span style="font-size:0.85em">✔ supported by (P(entail) {float(claim.get("entailment") or 0):.2f}): '
            + f"<i>{html.escape(str(claim.get('support', '')))}</i><br>"
            + f"✘ most contradicted by (P(contradict) {float(claim.get('contradiction') or 0):.2f}): "
            + f"<i>{html.escape(str(claim.get('contradicting', '')))}</i></span>",
            unsafe_allow_html=True,
        )
    source = context.record.get("source")
    if isinstance(source, str) and source:
        supporting = [str(c.get("support", "")) for c in claims if float(c.get("entailment") or 0) >= 0.5]
        contradicting = [
            str(c.get("contradicting", "")) for c in claims if float(c.get("contradiction") or 0) >= 0.5
        ]
        with st.expander("Source with supporting (green) and contradicting (red) chunks"):
            st.markdown(source_with_chunks_html(source, supporting, contradicting), unsafe_allow_html=True)


@evidence_view("semantic_entropy")
def semantic_entropy_view(context: EvidenceContext) -> None:
    """The samples grouped into meaning clusters."""
    scores_line(context)
    cluster_ids = context.detail("cluster_ids")
    samples = context.record.get("samples")
    if not cluster_ids or not isinstance(samples, list):
        _no_evidence(context, "cluster_ids")
        return
    prediction = context.record.get("prediction")
    st.markdown(
        clusters_html(
            [str(s) for s in samples], cluster_ids, prediction if isinstance(prediction, str) else None
        ),
        unsafe_allow_html=True,
    )


_PII_COLORS = {
    "email": "rgba(59, 130, 246, 0.35)",
    "phone": "rgba(234, 179, 8, 0.45)",
    "credit_card": "rgba(220, 38, 38, 0.35)",
    "iban": "rgba(168, 85, 247, 0.35)",
    "ssn": "rgba(249, 115, 22, 0.4)",
    "ip_address": "rgba(20, 184, 166, 0.35)",
}


@evidence_view("pii")
def pii_view(context: EvidenceContext) -> None:
    """The prediction with each PII match highlighted and labelled by type."""
    scores_line(context)
    spans = context.detail("spans")
    prediction = context.record.get("prediction")
    if spans is None or not isinstance(prediction, str):
        _no_evidence(context, "spans")
        return
    if not spans:
        st.caption("No PII found in the prediction.")
        return
    st.markdown(highlight_spans(prediction, spans, _PII_COLORS), unsafe_allow_html=True)


@evidence_view("bartscore", "bartscore_faithfulness")
def token_logprobs_view(context: EvidenceContext) -> None:
    """The prediction's tokens shaded by their log-probability under the scoring model."""
    scores_line(context)
    tokens = context.detail("tokens")
    if not tokens:
        _no_evidence(context, "tokens")
        return
    st.markdown(token_logprobs_html(tokens), unsafe_allow_html=True)
    st.caption("Darker red: the model found the token less likely (hover for its log-probability).")


@evidence_view("llm_judge")
def llm_judge_view(context: EvidenceContext) -> None:
    """The judge's probability per label and its reply (with its rationale when it was asked for one)."""
    scores_line(context)
    distribution = context.detail("distribution")
    if not distribution:
        _no_evidence(context, "distribution")
        return
    st.markdown(judge_distribution_html(distribution), unsafe_allow_html=True)
    overrides = context.record.get(f"{context.metric.name}_overrides")
    if overrides:
        st.caption("The judge overrode its small-model plug-in on this record (SuperICL).")
    reply = context.detail("reply")
    if reply:
        st.markdown("**Judge's reply**")
        st.text(str(reply))


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
