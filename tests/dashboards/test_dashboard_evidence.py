"""dashboards.evidence: the registry of views, the claims table and the alignment heatmap."""

from __future__ import annotations

from dashboards import evidence
from evalsuite.report.evidence import STATIC_EVIDENCE


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
        assert name in evidence.EVIDENCE_VIEWS or name in STATIC_EVIDENCE, name


def test_registering_a_view_is_one_decorator() -> None:
    @evidence.evidence_view("my_metric_for_test")
    def view(context: evidence.EvidenceContext) -> None:
        return None

    try:
        assert evidence.EVIDENCE_VIEWS["my_metric_for_test"] is view
    finally:
        del evidence.EVIDENCE_VIEWS["my_metric_for_test"]


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
