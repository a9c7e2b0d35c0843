"""evalsuite.report.evidence: the static HTML of each metric family's evidence (dashboard and report)."""

from __future__ import annotations

from evalsuite.report import evidence


def test_highlight_spans_escapes_and_marks() -> None:
    text = "Write to <b>me</b>: jane@x.org or call 555."
    start = text.index("jane@x.org")
    html = evidence.highlight_spans(
        text,
        [
            {"type": "email", "start": start, "end": start + 10},
            {"type": "phone", "start": start + 2, "end": start + 4},  # overlaps: skipped
            {"type": "phone", "start": 200, "end": 210},  # out of range: skipped
        ],
    )
    assert "&lt;b&gt;me&lt;/b&gt;" in html
    assert "<b>" not in html
    assert html.count("<mark") == 1
    assert ">jane@x.org</mark>" in html
    assert ">email</sup>" in html
    assert html.endswith(" or call 555.")


def test_scored_sentences_shade_by_score() -> None:
    html = evidence.scored_sentences_html(
        [{"sentence": "Fine <one>.", "score": 0.0}, {"sentence": "Contradicted.", "score": 1.0}]
    )
    assert "Fine &lt;one&gt;." in html
    assert "rgba(220, 38, 38, 0.08)" in html
    assert "rgba(220, 38, 38, 0.58)" in html
    assert "[0.00]" in html
    assert "[1.00]" in html


def test_clusters_group_samples_and_mark_the_prediction() -> None:
    html = evidence.clusters_html(
        ["Lyon.", "Paris.", "It is Paris.", "Paris."], [1, 0, 0, 0], prediction="Paris."
    )
    assert (
        html.index("meaning 1") < html.index("It is Paris.") < html.index("meaning 2") < html.index("Lyon.")
    )
    assert "3 of 4 samples (75%)" in html
    assert html.count("(= prediction)") == 2


def test_source_chunks_are_marked_where_found() -> None:
    source = "Paris is the capital. Lyon is big. Rome is in Italy."
    html = evidence.source_with_chunks_html(
        source, ["Paris is the capital."], ["Lyon is big.", "Not in source."]
    )
    assert "rgba(22, 163, 74, 0.35)" in html
    assert "rgba(220, 38, 38, 0.35)" in html
    assert html.endswith(" Rome is in Italy.")


def test_token_logprobs_html() -> None:
    html = evidence.token_logprobs_html(
        [{"token": "Paris", "logprob": -0.1}, {"token": "<x>", "logprob": -12.0}]
    )
    assert "log p = -0.10" in html
    assert "&lt;x&gt;" in html
    assert "rgba(220, 38, 38, 0.58)" in html  # capped at e^-10


def test_judge_distribution_bars_mark_the_most_likely_label_and_escape() -> None:
    html = evidence.judge_distribution_html(
        [{"label": "<yes>", "probability": 0.25}, {"label": "no", "probability": 0.75}]
    )
    assert "&lt;yes&gt;" in html
    assert "<b>no</b>" in html
    assert "0.75" in html
    assert "width:9.00em" in html
    assert evidence.judge_distribution_html([]) == ""
