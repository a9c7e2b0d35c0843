"""Evidence of one record as static HTML: the pure builders the dashboard draws with, and one renderer
per metric family for pages that have no Streamlit (the shareable report).

Every builder escapes every text it is given, so a record cannot inject markup into a page. Adding a
family is one function::

    @static_evidence("my_metric")
    def my_metric_html(record: Mapping[str, Any], metric: MetricInfo) -> str:
        return html.escape(str(record.get("my_metric_spans")))
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evalsuite.results import MetricInfo

__all__ = [
    "PII_COLORS",
    "claims_html",
    "clusters_html",
    "evidence_html",
    "highlight_spans",
    "judge_distribution_html",
    "scored_sentences_html",
    "source_with_chunks_html",
    "static_evidence",
    "token_logprobs_html",
]

StaticEvidence = Callable[[Mapping[str, Any], MetricInfo], str]
STATIC_EVIDENCE: dict[str, StaticEvidence] = {}


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


def claims_html(claims: Sequence[Mapping[str, Any]]) -> str:
    """Factuality claims, worst first: each shaded by its score (green supported, red contradicted),
    with its best supporting and most contradicting source chunk.

    >>> "+0.60" in claims_html([{"claim": "It is Paris.", "score": 0.6, "support": "Paris.", "entailment": 0.9}])
    True
    """
    blocks = []
    for claim in sorted(claims, key=lambda item: float(item.get("score") or 0.0)):
        score = float(claim.get("score") or 0.0)
        blocks.append(
            _mark(str(claim.get("claim", "")), _signed_color(score), f"score {score:.2f}")
            + f" <b>{score:+.2f}</b><br>"
            + f'<span style="font-size:0.85em">✔ supported by (P(entail) {float(claim.get("entailment") or 0):.2f}): '
            + f"<i>{html.escape(str(claim.get('support', '')))}</i><br>"
            + f"✘ most contradicted by (P(contradict) {float(claim.get('contradiction') or 0):.2f}): "
            + f"<i>{html.escape(str(claim.get('contradicting', '')))}</i></span>"
        )
    return "<br>".join(blocks)


def decisive_chunks(claims: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The source chunks that support (P(entail) >= 0.5) and contradict (P(contradict) >= 0.5) a claim."""
    supporting = [str(c.get("support", "")) for c in claims if float(c.get("entailment") or 0) >= 0.5]
    contradicting = [
        str(c.get("contradicting", "")) for c in claims if float(c.get("contradiction") or 0) >= 0.5
    ]
    return supporting, contradicting


PII_COLORS = {
    "email": "rgba(59, 130, 246, 0.35)",
    "phone": "rgba(234, 179, 8, 0.45)",
    "credit_card": "rgba(220, 38, 38, 0.35)",
    "iban": "rgba(168, 85, 247, 0.35)",
    "ssn": "rgba(249, 115, 22, 0.4)",
    "ip_address": "rgba(20, 184, 166, 0.35)",
}


# -- one static renderer per metric family --------------------------------------------------------------


def static_evidence(*names: str) -> Callable[[StaticEvidence], StaticEvidence]:
    """Register a static renderer for one or more metric names (a family sharing an evidence format)."""

    def register(renderer: StaticEvidence) -> StaticEvidence:
        for name in names:
            STATIC_EVIDENCE[name] = renderer
        return renderer

    return register


def evidence_html(record: Mapping[str, Any], metric: MetricInfo) -> str:
    """The metric's evidence for ``record`` as HTML ("" when the metric keeps none, or this record has none)."""
    renderer = STATIC_EVIDENCE.get(metric.name)
    return renderer(record, metric) if renderer is not None else ""


def _detail(record: Mapping[str, Any], metric: MetricInfo, name: str) -> Any:
    return record.get(f"{metric.name}_{name}")


_SENTENCE_CAPTIONS = {
    "selfcheck_nli": "Darker red: the model's own samples contradict the sentence more (0 = consistent, 1 = contradicted).",
    "toxicity": "Darker red: the sentence alone scores higher (the overall, unsafe or only column).",
}


def sentence_caption(metric_name: str) -> str:
    """What the shading of a sentence-scored metric means."""
    return _SENTENCE_CAPTIONS.get(metric_name, "Darker red: the sentence scores worse.")


def _caption(text: str) -> str:
    # Styled inline: the dashboard draws this HTML without the report's stylesheet.
    return f'<div class="caption" style="color:#6b7280;font-size:0.85em">{html.escape(text)}</div>'


@static_evidence(*_SENTENCE_CAPTIONS)
def _sentences(record: Mapping[str, Any], metric: MetricInfo) -> str:
    sentences = _detail(record, metric, "sentences")
    if not sentences:
        return ""
    return scored_sentences_html(sentences) + _caption(sentence_caption(metric.name))


@static_evidence("factuality")
def _factuality(record: Mapping[str, Any], metric: MetricInfo) -> str:
    claims = _detail(record, metric, "claims")
    if not claims:
        return ""
    parts = [claims_html(claims)]
    source = record.get("source")
    if isinstance(source, str) and source:
        supporting, contradicting = decisive_chunks(claims)
        parts.append(
            "<details><summary>Source with supporting (green) and contradicting (red) chunks</summary>"
            + source_with_chunks_html(source, supporting, contradicting)
            + "</details>"
        )
    return "".join(parts)


@static_evidence("semantic_entropy")
def _clusters(record: Mapping[str, Any], metric: MetricInfo) -> str:
    cluster_ids = _detail(record, metric, "cluster_ids")
    samples = record.get("samples")
    if not cluster_ids or not isinstance(samples, list):
        return ""
    prediction = record.get("prediction")
    return clusters_html(
        [str(s) for s in samples], cluster_ids, prediction if isinstance(prediction, str) else None
    )


@static_evidence("pii")
def _pii(record: Mapping[str, Any], metric: MetricInfo) -> str:
    spans = _detail(record, metric, "spans")
    prediction = record.get("prediction")
    if spans is None or not isinstance(prediction, str):
        return ""
    if not spans:
        return _caption("No PII found in the prediction.")
    return highlight_spans(prediction, spans, PII_COLORS)


@static_evidence("bartscore", "bartscore_faithfulness")
def _token_logprobs(record: Mapping[str, Any], metric: MetricInfo) -> str:
    tokens = _detail(record, metric, "tokens")
    if not tokens:
        return ""
    return token_logprobs_html(tokens) + _caption(
        "Darker red: the model found the token less likely (hover for its log-probability)."
    )


@static_evidence("llm_judge")
def _judge(record: Mapping[str, Any], metric: MetricInfo) -> str:
    distribution = _detail(record, metric, "distribution")
    if not distribution:
        return ""
    parts = [judge_distribution_html(distribution)]
    if record.get(f"{metric.name}_overrides"):
        parts.append(_caption("The judge overrode its small-model plug-in on this record (SuperICL)."))
    reply = _detail(record, metric, "reply")
    if reply:
        parts.append(f"<b>Judge's reply</b><pre>{html.escape(str(reply))}</pre>")
    return "".join(parts)
