"""NLI evaluation: reading labelled pairs, calibration error, the report, and ``evalsuite nli-eval``.

Figures are checked against counts worked out by hand (not against scikit-learn, which the
report itself uses).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evalsuite.calibration import top_label_calibration_error as expected_calibration_error
from evalsuite.cli import app
from evalsuite.errors import InputError
from evalsuite.runtime import Runtime
from evalsuite.runtime.nli import NLI_LABELS
from evalsuite.training.nli_eval import nli_report, read_nli_pairs

TinyFactory = Callable[..., Path]
E, N, C = (NLI_LABELS.index(name) for name in ("entailment", "neutral", "contradiction"))

ROWS = [
    {"premise": "A man plays a guitar.", "hypothesis": "A person makes music.", "label": "entailment"},
    {"premise": "A man plays a guitar.", "hypothesis": "The man is famous.", "label": "neutral"},
    {"premise": "A man plays a guitar.", "hypothesis": "Nobody plays anything.", "label": "contradiction"},
    {"premise": "The café opens daily.", "hypothesis": "It opens on Sunday.", "label": "entailment"},
    {"premise": "The café opens daily.", "hypothesis": "It sells croissants.", "label": "neutral"},
    {"premise": "The café opens daily.", "hypothesis": "It is closed on Mondays.", "label": "contradiction"},
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def good_lines() -> list[str]:
    return [json.dumps(row, ensure_ascii=False) for row in ROWS]


# -- read_nli_pairs -------------------------------------------------------------------------------
def test_read_nli_pairs_returns_pairs_and_label_indices(tmp_path: Path) -> None:
    lines = good_lines()
    source = write_jsonl(tmp_path / "pairs.jsonl", [lines[0], "", "   ", *lines[1:]])
    pairs, labels = read_nli_pairs(source)
    assert pairs == [(row["premise"], row["hypothesis"]) for row in ROWS]
    assert labels == [NLI_LABELS.index(row["label"]) for row in ROWS]
    assert read_nli_pairs(source, limit=2) == (pairs[:2], labels[:2])


@pytest.mark.parametrize(
    ("bad_line", "field", "message"),
    [
        ('{"premise": "a", "hypothesis": ', None, "malformed JSON"),
        ('{"premise": "", "hypothesis": "b", "label": "neutral"}', "premise", "non-empty string"),
        ('{"hypothesis": "b", "label": "neutral"}', "premise", "non-empty string"),
        ('{"premise": "a", "hypothesis": "  ", "label": "neutral"}', "hypothesis", "non-empty string"),
        ('{"premise": "a", "hypothesis": 3, "label": "neutral"}', "hypothesis", "non-empty string"),
        ('{"premise": "a", "hypothesis": "b", "label": "maybe"}', "label", "got 'maybe'"),
        ('{"premise": "a", "hypothesis": "b", "label": "Entailment"}', "label", "got 'Entailment'"),
        ('{"premise": "a", "hypothesis": "b"}', "label", "got None"),
    ],
)
def test_read_nli_pairs_errors_name_file_line_and_field(
    tmp_path: Path, bad_line: str, field: str | None, message: str
) -> None:
    lines = good_lines()
    source = write_jsonl(tmp_path / "pairs.jsonl", [lines[0], "", bad_line, lines[1]])
    with pytest.raises(InputError, match=re.escape(message)) as error:
        read_nli_pairs(source)
    assert error.value.location == f"{source}:3"
    assert str(error.value).startswith(f"{source}:3: ")
    assert error.value.field == field
    if field is not None:
        assert repr(field) in str(error.value)


def test_read_nli_pairs_refuses_a_line_that_is_not_an_object(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", ['["a", "b", "entailment"]'])
    with pytest.raises(InputError, match=re.escape(f"{source}:1")):
        read_nli_pairs(source)


# -- expected_calibration_error -------------------------------------------------------------------
# Confidences 0.9 (right), 0.85 (wrong), 0.7 (right), 0.5 (wrong); no confidence sits on a bin edge.
CALIBRATION_PROBABILITIES = np.array(
    [[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.2, 0.1, 0.7], [0.5, 0.3, 0.2]], dtype=np.float64
)
CALIBRATION_LABELS = np.array([E, E, C, N])


def test_expected_calibration_error_matches_a_hand_computation() -> None:
    # 5 bins of width 0.2: (0.8, 1] holds 0.9 and 0.85 (accuracy 1/2, confidence 0.875),
    # (0.6, 0.8] holds 0.7 (accuracy 1), (0.4, 0.6] holds 0.5 (accuracy 0).
    by_hand = 2 / 4 * abs(0.5 - 0.875) + 1 / 4 * abs(1 - 0.7) + 1 / 4 * abs(0 - 0.5)
    assert expected_calibration_error(CALIBRATION_PROBABILITIES, CALIBRATION_LABELS, bins=5) == pytest.approx(
        by_hand, abs=1e-12
    )
    # 15 bins (the default) put each confidence in a bin of its own.
    alone = (abs(1 - 0.9) + abs(0 - 0.85) + abs(1 - 0.7) + abs(0 - 0.5)) / 4
    assert expected_calibration_error(CALIBRATION_PROBABILITIES, CALIBRATION_LABELS) == pytest.approx(
        alone, abs=1e-12
    )


def test_expected_calibration_error_is_zero_when_confidence_equals_accuracy() -> None:
    # Ten predictions of entailment at confidence 0.8, eight of them right.
    probabilities = np.tile([0.8, 0.15, 0.05], (10, 1))
    labels = np.array([E] * 8 + [N, C])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-9)
    certain = np.eye(3)[[E, N, C, C]]
    assert expected_calibration_error(certain, np.array([E, N, C, C])) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(expected_calibration_error(np.empty((0, 3)), np.empty(0, dtype=int)))


# -- nli_report -----------------------------------------------------------------------------------
# gold, probabilities (E, N, C), argmax, and the E-vs-C decision on gold E/C rows.
REPORT_ROWS = [
    (E, [0.7, 0.2, 0.1]),  # predicted E; two-way E (right)
    (E, [0.25, 0.5, 0.25]),  # predicted N; two-way tie → E (right)
    (E, [0.1, 0.3, 0.6]),  # predicted C; two-way C (wrong)
    (N, [0.2, 0.6, 0.2]),  # predicted N
    (N, [0.5, 0.4, 0.1]),  # predicted E
    (C, [0.1, 0.2, 0.7]),  # predicted C; two-way C (right)
    (C, [0.2, 0.5, 0.3]),  # predicted N; two-way C (right)
    (C, [0.6, 0.1, 0.3]),  # predicted E; two-way E (wrong)
]


def test_nli_report_matches_hand_counts() -> None:
    labels = [gold for gold, _ in REPORT_ROWS]
    probabilities = np.array([row for _, row in REPORT_ROWS])
    report = nli_report("tiny", probabilities, labels, seconds=2.0)

    assert report.model == "tiny"
    assert report.pairs == 8
    assert report.accuracy == pytest.approx(3 / 8)
    # rows: gold E, N, C; columns: predicted E, N, C
    assert report.confusion == [[1, 1, 1], [1, 1, 0], [1, 1, 1]]
    expected_per_class = {
        "entailment": {"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3, "support": 3},
        "neutral": {"precision": 1 / 3, "recall": 1 / 2, "f1": 2 / 5, "support": 2},
        "contradiction": {"precision": 1 / 2, "recall": 1 / 3, "f1": 2 / 5, "support": 3},
    }
    assert set(report.per_class) == set(NLI_LABELS)
    for label, expected in expected_per_class.items():
        assert report.per_class[label] == pytest.approx(expected)
    assert report.entailment_vs_contradiction == pytest.approx({"pairs": 6, "accuracy": 4 / 6})
    assert report.expected_calibration_error == pytest.approx(
        expected_calibration_error(probabilities, np.array(labels))
    )
    assert report.pairs_per_second == pytest.approx(4.0)
    as_dict = report.to_dict()
    assert as_dict["labels"] == list(NLI_LABELS)
    assert json.loads(json.dumps(as_dict))["confusion"] == report.confusion


def test_nli_report_without_entailment_or_contradiction_gold() -> None:
    report = nli_report("tiny", np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]]), [N, N])
    assert report.accuracy == pytest.approx(0.5)
    assert report.entailment_vs_contradiction["pairs"] == 0
    assert np.isnan(report.entailment_vs_contradiction["accuracy"])
    assert report.pairs_per_second == 0.0


# -- evalsuite nli-eval ---------------------------------------------------------------------------
runner = CliRunner()


def test_nli_eval_command_prints_and_writes_the_report(
    tmp_path: Path, tiny_cross_encoder: TinyFactory
) -> None:
    model_dir = tiny_cross_encoder(("contradiction", "entailment", "neutral"))
    source = write_jsonl(tmp_path / "pairs.jsonl", good_lines())
    report_path = tmp_path / "report.json"
    args = ["nli-eval", str(source), "--model", str(model_dir), "--device", "cpu", "--batch-size", "2"]
    result = runner.invoke(app, [*args, "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"accuracy \d\.\d{4}", result.output)
    assert "ECE" in result.output
    written = json.loads(report_path.read_text(encoding="utf-8"))
    assert written["pairs"] == len(ROWS)
    assert written["labels"] == list(NLI_LABELS)
    assert len(written["confusion"]) == 3
    assert all(len(row) == 3 for row in written["confusion"])
    assert [sum(row) for row in written["confusion"]] == [2, 2, 2]  # two gold pairs per class
    # The command's figures are the library's figures for the same model and pairs.
    pairs, labels = read_nli_pairs(source)
    probabilities = Runtime(device="cpu").nli(str(model_dir), pairs).numpy()
    direct = nli_report(str(model_dir), probabilities, labels)
    assert written["confusion"] == direct.confusion
    assert written["accuracy"] == pytest.approx(direct.accuracy)
    assert written["expected_calibration_error"] == pytest.approx(direct.expected_calibration_error, abs=1e-6)


def test_nli_eval_command_limit(tmp_path: Path, tiny_cross_encoder: TinyFactory) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", good_lines())
    report_path = tmp_path / "report.json"
    args = ["nli-eval", str(source), "--model", str(tiny_cross_encoder()), "--device", "cpu", "--limit", "4"]
    result = runner.invoke(app, [*args, "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(report_path.read_text(encoding="utf-8"))["pairs"] == 4


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("{not json", "malformed JSON"),
        ('{"premise": "a", "hypothesis": "b", "label": "maybe"}', "field 'label'"),
    ],
)
def test_nli_eval_command_bad_file_exits_2_naming_the_line(
    tmp_path: Path, tiny_cross_encoder: TinyFactory, bad_line: str, expected: str
) -> None:
    lines = good_lines()
    source = write_jsonl(tmp_path / "pairs.jsonl", [lines[0], bad_line])
    report_path = tmp_path / "report.json"
    args = ["nli-eval", str(source), "--model", str(tiny_cross_encoder()), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--json", str(report_path)])
    assert result.exit_code == 2, result.output
    assert f"{source}:2" in result.output
    assert expected in result.output
    assert not report_path.exists()


def test_nli_eval_command_unnamed_labels_exit_2(tmp_path: Path, tiny_cross_encoder: TinyFactory) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", good_lines())
    model_dir = tiny_cross_encoder(("LABEL_0", "LABEL_1", "LABEL_2"))
    result = runner.invoke(app, ["nli-eval", str(source), "--model", str(model_dir), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "label_map" in result.output
