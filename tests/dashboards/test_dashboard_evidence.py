"""dashboards.evidence: the registry and the HTML each metric family's view shows."""

from __future__ import annotations

from dashboards import evidence


def test_every_metric_family_with_evidence_has_a_view() -> None:
    for name in (
        "bertscore",
        "selfcheck_nli",
        "factuality",
        "semantic_entropy",
        "pii",
        "bartscore",
        "bartscore_faithfulness",
        "llm_judge",
        "toxicity",
    ):
        assert name in evidence.EVIDENCE_VIEWS, name


def test_registering_a_view_is_one_decorator() -> None:
    @evidence.evidence_view("my_metric_for_test")
    def view(context: evidence.EvidenceContext) -> None:
        return None

    try:
        assert evidence.EVIDENCE_VIEWS["my_metric_for_test"] is view
    finally:
        del evidence.EVIDENCE_VIEWS["my_metric_for_test"]


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


def test_claims_table_sorts_worst_first() -> None:
    table = evidence.claims_table(
        [
            {
                "claim": "a",
                "score": 0.5,
                "support": "s",
                "entailment": 0.7,
                "contradicting": "c",
                "contradiction": 0.2,
            },
            {
                "claim": "b",
                "score": -0.6,
                "support": "s",
                "entailment": 0.1,
                "contradicting": "c",
                "contradiction": 0.7,
            },
        ]
    )
    assert table["claim"].to_list() == ["b", "a"]


def test_token_logprobs_html() -> None:
    html = evidence.token_logprobs_html(
        [{"token": "Paris", "logprob": -0.1}, {"token": "<x>", "logprob": -12.0}]
    )
    assert "log p = -0.10" in html
    assert "&lt;x&gt;" in html
    assert "rgba(220, 38, 38, 0.58)" in html  # capped at e^-10


def test_alignment_chart_marks_the_greedy_match() -> None:
    chart = evidence.alignment_chart(
        {
            "prediction_tokens": ["[CLS]", "paris", "[SEP]"],
            "reference_tokens": ["[CLS]", "it", "paris", "[SEP]"],
            "similarity": [[0.9, 0.1, 0.2, 0.3], [0.2, 0.3, 0.95, 0.1], [0.3, 0.1, 0.2, 0.8]],
        }
    )
    spec = chart.to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))] if "datasets" in spec else spec["data"]["values"]
    best = [(row["prediction token"], row["reference token"]) for row in values if row["best match"]]
    assert best == [("00 [CLS]", "00 [CLS]"), ("01 paris", "02 paris"), ("02 [SEP]", "03 [SEP]")]


def test_judge_distribution_bars_mark_the_most_likely_label_and_escape() -> None:
    html = evidence.judge_distribution_html(
        [{"label": "<yes>", "probability": 0.25}, {"label": "no", "probability": 0.75}]
    )
    assert "&lt;yes&gt;" in html
    assert "<b>no</b>" in html
    assert "0.75" in html
    assert "width:9.00em" in html
    assert evidence.judge_distribution_html([]) == ""
