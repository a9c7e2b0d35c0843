"""bench/factuality_benchmark.py end to end: a tiny synthetic data directory, a tiny random NLI model."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from evalsuite.runtime.nli import NLI_LABELS
from tests.evalsuite.conftest import build_tiny_cross_encoder

BENCH = Path(__file__).resolve().parents[2] / "bench"
SENTENCES = (
    "The river flows north to the sea.",
    "The town has a stone bridge.",
    "A market opens every Sunday.",
    "The bridge was built in 1820.",
)


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The benchmark module, imported as its script imports its neighbours (``bench/`` on the path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("factuality_benchmark")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-nli") / "tiny-nli", NLI_LABELS)


def document(index: int) -> str:
    return " ".join(SENTENCES[index % 2 :])


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",") -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def write_tiny_data(root: Path) -> Path:
    """A few records of every file the benchmark reads, in each file's own format."""
    folder = root / "factuality"
    folder.mkdir(parents=True)
    wice = ["supported", "partially_supported", "not_supported", "supported"]
    for split in ("dev", "test"):
        rows = [
            {"id": f"{split}-{i}", "document": document(i), "claim": SENTENCES[i], "label": label}
            for i, label in enumerate(wice)
        ]
        write_jsonl(folder / f"wice_claim_{split}.jsonl", rows)
    stances = ["completely-support", "refute", "partially-support", "irrelevant"] * 2
    rows = [{"claim": SENTENCES[i % 4], "evidence": document(i), "stance": s} for i, s in enumerate(stances)]
    write_jsonl(folder / "factcheck_gpt_claim_evidence_stance.jsonl", rows)
    begin = ["Fully attributable", "Not fully attributable", "Generic"] * 2
    for source in ("wow", "cmu", "tc"):
        rows = [
            {
                "model_name": "t5",
                "data_source": source,
                "knowledge": document(i),
                "message": "Tell me about the town.",
                "response": SENTENCES[i % 4],
                "begin_label": label,
            }
            for i, label in enumerate(begin)
        ]
        write_csv(folder / f"begin_dev_{source}.tsv", rows, delimiter="\t")
    for subset in ("factcc", "summeval", "xsumfaith", "polytope"):
        items = {
            f"{subset}_{i}": {
                "document": document(i),
                "claim": SENTENCES[i % 4],
                "label": str(i % 2),
                "bbcid": i,
            }
            for i in range(6)
        }
        (folder / f"summac_pr15_{subset}.json").write_text(json.dumps(items), encoding="utf-8")
    scores = [
        {"system_bbcid": f"ptgen_{i}", "Faithful": str(i / 5), "Entailment": "0.5", "BERTScore": "0.5"}
        for i in range(5)
    ]
    write_csv(folder / "xsumfaith_eval_scores_xsum_summaries.csv", scores)
    summaries = [{"bbcid": str(i), "system": "PtGen", "summary": SENTENCES[i % 4]} for i in range(5)]
    write_csv(folder / "xsumfaith_hallucination_annotations_xsum_summaries.csv", summaries)
    return root


@pytest.mark.slow
def test_main_reports_every_dataset_for_each_checker(
    bench: ModuleType, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tiny_data(tmp_path / "data")
    out = tmp_path / "figures.json"
    argv = ["--data", str(data), "--model", str(tiny_model), "--model", str(tmp_path / "absent")]
    argv += ["--checker", "summac-zs", "--checker", "minicheck", "--checker", "summac-conv"]
    assert bench.main([*argv, "--device", "cpu", "--markdown", "--json", str(out)]) == 0

    figures = json.loads(out.read_text(encoding="utf-8"))
    ran = {result["checker"]: result for result in figures["checkers"]}
    assert list(ran) == ["tiny-nli + summac-zs", "tiny-nli + minicheck"]
    assert set(figures["skipped"]) == {
        "tiny-nli + summac-conv",
        *(f"absent + {r}" for r in ("summac-zs", "minicheck", "summac-conv")),
    }
    assert "--aggregator" in figures["skipped"]["tiny-nli + summac-conv"]
    for result in ran.values():
        tasks = {task["dataset"]: task for task in result["tasks"]}
        assert list(tasks) == [
            "wice",
            "factcheck-gpt",
            "factcheck-gpt +irrelevant",
            "begin",
            "summac-factcc",
            "summac-summeval",
            "summac-xsumfaith",
            "summac-polytope",
        ]
        # The binarisations: WiCE test scored (only "supported" positive), irrelevant evidence out of
        # the main Factcheck-GPT row and negative in the other, BEGIN's Generic responses out.
        assert (tasks["wice"]["n"], tasks["wice"]["supported"]) == (4, 2)
        assert (tasks["factcheck-gpt"]["n"], tasks["factcheck-gpt"]["supported"]) == (6, 2)
        assert (tasks["factcheck-gpt +irrelevant"]["n"], tasks["factcheck-gpt +irrelevant"]["supported"]) == (
            8,
            2,
        )
        assert (tasks["begin"]["n"], tasks["begin"]["supported"]) == (12, 6)
        assert "factcheck-gpt +irrelevant" not in result["mean_over"]
        assert set(result["spearman"]) == {"xsumfaith"}
        assert result["records_per_second"] > 0
    options = {run["benchmark"]: run["options"] for run in ran["tiny-nli + minicheck"]["runs"]}
    assert options["wice"]["claims"] == "whole"
    assert "claims" not in options["summac-factcc"]
    assert ran["tiny-nli + minicheck"]["fixed_threshold_source"].endswith("has no calibration.json)")
    printed = capsys.readouterr().out
    assert "| summac-polytope |" in printed
    assert "| published: MiniCheck-Flan-T5-L | 75.0 |" in printed


def test_a_missing_data_directory_is_a_usage_error(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--data", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_thresholds_are_never_chosen_on_the_scored_half(bench: ModuleType) -> None:
    # Each half separates perfectly, at its own cut: tuned on the scored half, the accuracy would be 1;
    # the other half's cut calls every record of this half the same, so it is 0.5.
    labels = [0, 0, 1, 1, 0, 0, 1, 1]
    first, second = bench.halves(labels, seed=0)
    scores = [0.0] * len(labels)
    for half, offset in ((first, 0.0), (second, 0.5)):
        for rank, index in enumerate(sorted(half, key=lambda i: labels[i])):
            scores[index] = offset + 0.1 * (rank + 1)
    accuracy, thresholds = bench.two_fold_accuracy(scores, labels, seed=0)
    assert accuracy == pytest.approx(0.5)
    assert len(thresholds) == 2


def test_halves_are_stratified(bench: ModuleType) -> None:
    labels = [1, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    first, second = bench.halves(labels, seed=3)
    assert sorted(first + second) == list(range(len(labels)))
    assert abs(sum(labels[i] for i in first) - sum(labels[i] for i in second)) <= 1
